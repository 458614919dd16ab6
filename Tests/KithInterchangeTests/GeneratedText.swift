/// Deterministic text made of random pieces (a 64-bit LCG): the inputs the fast-path tests
/// compare a fast path and its reference over.
struct GeneratedText {
    var state: UInt64

    mutating func next() -> Int {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Int(state >> 33)
    }

    /// Up to `maxPieces - 1` pieces drawn from `pieces`, concatenated.
    mutating func text(_ pieces: [String], maxPieces: Int) -> String {
        var s = ""
        for _ in 0..<(next() % maxPieces) { s += pieces[next() % pieces.count] }
        return s
    }
}
