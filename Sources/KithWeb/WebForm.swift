/// The fields of a submitted form: `application/x-www-form-urlencoded` (every form of the page)
/// or `multipart/form-data` (the import upload). Repeated names keep every value in order
/// (checkboxes). No I/O: the route hands over the body's bytes.
public struct WebForm: Sendable {
    public struct File: Sendable {
        public let filename: String
        public let bytes: [UInt8]
    }

    public private(set) var fields: [(name: String, value: String)] = []
    public private(set) var files: [String: File] = [:]

    public init() {}

    /// The first value of `name`, trimmed; nil when absent or blank.
    public subscript(_ name: String) -> String? {
        guard let v = fields.first(where: { $0.name == name })?.value.trimmingCharacters(in: .whitespacesAndNewlines), !v.isEmpty else { return nil }
        return v
    }

    /// Every non-blank value of `name` (ticked checkboxes), in order.
    public func all(_ name: String) -> [String] { fields.filter { $0.name == name && !$0.value.isEmpty }.map(\.value) }

    public struct Invalid: Error, Sendable, Equatable {
        public let message: String
    }

    /// Parses a body by its `Content-Type`.
    public static func parse(_ body: [UInt8], contentType: String?) throws(Invalid) -> WebForm {
        let type = (contentType ?? "").lowercased()
        if type.hasPrefix("multipart/form-data") {
            guard let range = (contentType ?? "").range(of: "boundary=", options: .caseInsensitive) else {
                throw Invalid(message: "the upload has no multipart boundary")
            }
            var boundary = String((contentType ?? "")[range.upperBound...])
            if let semi = boundary.firstIndex(of: ";") { boundary = String(boundary[..<semi]) }
            boundary = boundary.trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
            return try multipart(body, boundary: boundary)
        }
        return urlEncoded(String(decoding: body, as: UTF8.self))
    }

    public static func urlEncoded(_ text: String) -> WebForm {
        var form = WebForm()
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String {
                String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s)
            }
            form.fields.append((decode(kv[0]), kv.count > 1 ? decode(kv[1]) : ""))
        }
        return form
    }

    /// RFC 7578: parts separated by `--boundary`, each with headers, a blank line and content.
    static func multipart(_ body: [UInt8], boundary: String) throws(Invalid) -> WebForm {
        guard !boundary.isEmpty, boundary.count <= 200 else { throw Invalid(message: "the upload's multipart boundary is not valid") }
        let delimiter = Array(("--" + boundary).utf8)
        var form = WebForm()
        var starts: [Int] = []
        var i = 0
        // A delimiter starts the body or a line, and is followed by CRLF or "--" (the last one):
        // the same bytes inside a file's content are content.
        while let at = find(delimiter, in: body, from: i) {
            let end = at + delimiter.count
            let lineStart = at == 0 || (at >= 2 && body[at - 2] == 13 && body[at - 1] == 10)
            let follows = end + 1 < body.count && ((body[end] == 13 && body[end + 1] == 10) || (body[end] == 45 && body[end + 1] == 45))
            if lineStart && follows { starts.append(at) }
            i = at + 1
        }
        guard starts.count >= 2 else { throw Invalid(message: "the upload is not a complete multipart form") }
        for (n, start) in starts.dropLast().enumerated() {
            var partStart = start + delimiter.count
            // CRLF after the delimiter
            if partStart + 1 < body.count, body[partStart] == 13, body[partStart + 1] == 10 { partStart += 2 }
            var partEnd = starts[n + 1]
            if partEnd >= 2, body[partEnd - 2] == 13, body[partEnd - 1] == 10 { partEnd -= 2 }
            guard partEnd >= partStart, let headerEnd = find(Array("\r\n\r\n".utf8), in: Array(body[partStart..<partEnd]), from: 0) else {
                throw Invalid(message: "a part of the upload has no headers")
            }
            let headers = String(decoding: body[partStart..<(partStart + headerEnd)], as: UTF8.self)
            let content = Array(body[(partStart + headerEnd + 4)..<partEnd])
            guard let disposition = headers.split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("content-disposition:") }),
                  let name = parameter("name", in: String(disposition)) else {
                throw Invalid(message: "a part of the upload has no field name")
            }
            if let filename = parameter("filename", in: String(disposition)) {
                form.files[name] = File(filename: filename, bytes: content)
            } else {
                form.fields.append((name, String(decoding: content, as: UTF8.self)))
            }
        }
        return form
    }

    static func parameter(_ key: String, in header: String) -> String? {
        for part in header.split(separator: ";") {
            let kv = part.trimmingCharacters(in: .whitespaces)
            if kv.hasPrefix(key + "=") {
                return String(kv.dropFirst(key.count + 1)).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
        }
        return nil
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count else { return nil }
        var i = from
        let last = haystack.count - needle.count
        while i <= last {
            if haystack[i] == needle[0] {
                var match = true
                for j in 1..<needle.count where haystack[i + j] != needle[j] {
                    match = false
                    break
                }
                if match { return i }
            }
            i += 1
        }
        return nil
    }
}

import Foundation
