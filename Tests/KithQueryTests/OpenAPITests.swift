import Foundation
import KithQuery
import Testing

/// Protocol/openapi.json describes exactly the routes the server registers (`APIRoute.all`):
/// every route is documented with its operation id and path parameters, and nothing else is.
/// (scripts/check-openapi validates the document and its examples; APIDaemonTests validates
/// real answers against it.)
@Suite("OpenAPI document")
struct OpenAPITests {
    static var root: URL { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }

    @Test func documentsExactlyTheServersRoutes() throws {
        let data = try Data(contentsOf: Self.root.appendingPathComponent("Protocol/openapi.json"))
        let spec = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect((spec["openapi"] as? String)?.hasPrefix("3.1") == true)
        let paths = try #require(spec["paths"] as? [String: [String: Any]])
        var documented = Set<String>()
        for (path, ops) in paths {
            for (method, value) in ops {
                let op = try #require(value as? [String: Any])
                let id = try #require(op["operationId"] as? String)
                documented.insert("\(method.uppercased()) \(path) \(id)")
                let names = ((op["parameters"] as? [[String: Any]]) ?? []).filter { $0["in"] as? String == "path" }.compactMap { $0["name"] as? String }
                let route = APIRoute.route(for: id)
                #expect(route.map { names == $0.parameters } ?? false, "\(id): path parameters \(names)")
                #expect((op["responses"] as? [String: Any])?["default"] != nil, "\(id) documents its error answer")
            }
        }
        let served = Set(APIRoute.all.map { "\($0.method.rawValue) \($0.path) \($0.op)" })
        #expect(documented == served, "only documented: \(documented.subtracting(served)); only served: \(served.subtracting(documented))")
        #expect(Set(APIRoute.all.map(\.op)).count == APIRoute.all.count, "operation ids are unique")
    }
}
