import CQRencode

/// QR codes through libqrencode (Debian's libqrencode-dev), the only file that calls it: the
/// symbol's modules as a matrix, and that matrix as inline SVG for the invite page.
public struct QRCode: Sendable, Equatable {
    /// Modules per side.
    public let size: Int
    /// Row-major, true = dark.
    public let modules: [Bool]

    public struct Failure: Error, Sendable {
        public let message: String
    }

    /// Encodes `text` (8-bit mode, error correction level M, the smallest version that fits).
    public init(_ text: String) throws(Failure) {
        guard let code = QRcode_encodeString8bit(text, 0, QR_ECLEVEL_M) else {
            throw Failure(message: "libqrencode could not encode \(text.utf8.count) bytes (too long for a QR code?)")
        }
        defer { QRcode_free(code) }
        let width = Int(code.pointee.width)
        var modules = [Bool](repeating: false, count: width * width)
        // Bit 0 of each byte: dark module (the other bits describe the module's role).
        for i in 0..<(width * width) { modules[i] = code.pointee.data[i] & 1 == 1 }
        self.size = width
        self.modules = modules
    }

    public func isDark(row: Int, column: Int) -> Bool { modules[row * size + column] }

    /// An SVG drawing of the code with a 4-module quiet zone: one path of unit squares, crisp
    /// at any size (`shape-rendering="crispEdges"`), black on white whatever the page's colours.
    public func svg(title: String) -> String {
        let side = size + 8
        var path = ""
        path.reserveCapacity(size * size * 4)
        for r in 0..<size {
            var c = 0
            while c < size {
                guard isDark(row: r, column: c) else { c += 1; continue }
                var run = 1
                while c + run < size, isDark(row: r, column: c + run) { run += 1 }
                path += "M\(c + 4) \(r + 4)h\(run)v1h-\(run)z"
                c += run
            }
        }
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(side) \(side)\" width=\"264\" height=\"264\" shape-rendering=\"crispEdges\">"
            + "<title>\(WebEscape.html(title))</title><rect width=\"\(side)\" height=\"\(side)\" fill=\"#fff\"/><path fill=\"#000\" d=\"\(path)\"/></svg>"
    }
}

/// HTML escaping for the little markup made in Swift (the QR code's title); templates escape
/// their own values.
public enum WebEscape {
    public static func html(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(ch)
            }
        }
        return out
    }
}
