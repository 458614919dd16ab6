import Foundation
import KithCRDT
import KithCrypto

/// The pure part of the control API (Protocol/control.md): a request line → its op and fields,
/// base64url edits → edits, and checked numbers. No node and no NIO, so the fuzz target
/// (Fuzz/Targets/Control.swift) compiles this file on its own.
enum ControlRequest {
    struct Invalid: Error, Equatable {
        let message: String
    }

    /// One request line: a JSON object with a string `op`; nil for anything else.
    static func parse(_ line: [UInt8]) -> (op: String, fields: [String: Any])? {
        guard let request = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any],
              let op = request["op"] as? String else { return nil }
        return (op, request)
    }

    /// One encoded edit (base64url of `ContactEdit.encoded`).
    static func edit(_ text: String) -> ContactEdit? {
        guard let bytes = Base64URL.decode(text) else { return nil }
        return try? ContactEdit(decoding: bytes)
    }

    /// The `batches` of a `commit`: `[[base64url edit, …], …]`.
    static func batches(_ fields: [String: Any]) throws(Invalid) -> [[ContactEdit]] {
        guard let batches = fields["batches"] as? [[String]] else {
            throw Invalid(message: "commit needs \"batches\": [[base64url edit, …], …]")
        }
        var decoded: [[ContactEdit]] = []
        for b in batches {
            var edits: [ContactEdit] = []
            for text in b {
                guard let e = edit(text) else { throw Invalid(message: "an edit does not decode") }
                edits.append(e)
            }
            decoded.append(edits)
        }
        return decoded
    }

    /// An optional whole number `key`: a JSON number, or digits (query strings carry text).
    static func integer(_ fields: [String: Any], _ key: String) throws(Invalid) -> Int? {
        guard let value = fields[key] else { return nil }
        if !isBoolean(value), !(value is String), let i = value as? Int { return i }
        if let t = value as? String, let n = Int(t) { return n }
        throw Invalid(message: "\(key) must be a whole number")
    }

    /// JSON `true`/`false` (JSONSerialization's boolean NSNumber; `1` is an NSNumber too).
    static func isBoolean(_ value: Any) -> Bool {
        value is Bool && "\(type(of: value))".contains("Boolean") || type(of: value) == Bool.self
    }

    /// An optional flag `key`: a JSON boolean, nothing else (a wrong type is refused, not
    /// read as false).
    static func bool(_ fields: [String: Any], _ key: String) throws(Invalid) -> Bool? {
        guard let value = fields[key] else { return nil }
        // JSONSerialization gives NSNumber for both numbers and booleans: only a real boolean passes.
        if isBoolean(value), let b = value as? Bool { return b }
        throw Invalid(message: "\(key) must be true or false")
    }

    /// An optional whole number of seconds `key`, refused outside 1...`max` (nil when absent).
    static func seconds(_ fields: [String: Any], _ key: String, max: Int, what: String) throws(Invalid) -> UInt64? {
        guard let value = fields[key] else { return nil }
        guard let n = value as? Int, n >= 1, n <= max else {
            throw Invalid(message: "\(what) must be a whole number of seconds from 1 to \(max)")
        }
        return UInt64(n)
    }
}
