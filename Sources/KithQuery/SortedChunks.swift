/// A sorted multiset kept in chunks of at most `chunkLimit` elements, so that inserting or
/// removing one element costs O(log n + chunkLimit) instead of moving the whole array, and a
/// range scan from any position is a binary search plus a walk. Pure value type.
///
/// Elements must be totally ordered and, for `remove`, equal elements must be interchangeable.
public struct SortedChunks<Element: Comparable & Sendable>: Sendable {
    private var chunks: [[Element]] = []
    public private(set) var count = 0
    let chunkLimit: Int

    public init(chunkLimit: Int = 512) {
        self.chunkLimit = max(8, chunkLimit)
    }

    /// Builds from `elements` in any order (one sort, then cut into chunks half full... of room).
    public init(_ elements: [Element], chunkLimit: Int = 512) {
        self.chunkLimit = max(8, chunkLimit)
        let sorted = elements.sorted()
        count = sorted.count
        let fill = self.chunkLimit * 3 / 4
        var i = 0
        chunks.reserveCapacity(sorted.count / fill + 1)
        while i < sorted.count {
            let end = min(i + fill, sorted.count)
            chunks.append(Array(sorted[i..<end]))
            i = end
        }
    }

    /// A position: chunk and offset inside it.
    public struct Index: Comparable, Sendable {
        let chunk: Int
        let offset: Int
        public static func < (a: Index, b: Index) -> Bool { (a.chunk, a.offset) < (b.chunk, b.offset) }
    }

    /// The chunk that holds (or would hold) the first element not less than `value`.
    private func chunkFor(_ value: Element) -> Int {
        var lo = 0, hi = chunks.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if chunks[mid][chunks[mid].count - 1] < value { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    private static func lowerBound(_ a: [Element], _ value: Element) -> Int {
        var lo = 0, hi = a.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if a[mid] < value { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    public mutating func insert(_ value: Element) {
        count += 1
        if chunks.isEmpty {
            chunks.append([value])
            return
        }
        var c = chunkFor(value)
        if c == chunks.count { c -= 1 } // larger than everything: the last chunk
        let at = Self.lowerBound(chunks[c], value)
        chunks[c].insert(value, at: at)
        if chunks[c].count > chunkLimit {
            let half = chunks[c].count / 2
            let tail = Array(chunks[c][half...])
            chunks[c].removeSubrange(half...)
            chunks.insert(tail, at: c + 1)
        }
    }

    /// Removes one element equal to `value`; false when there is none.
    @discardableResult
    public mutating func remove(_ value: Element) -> Bool {
        let c = chunkFor(value)
        guard c < chunks.count else { return false }
        let at = Self.lowerBound(chunks[c], value)
        guard at < chunks[c].count, chunks[c][at] == value else { return false }
        chunks[c].remove(at: at)
        count -= 1
        if chunks[c].isEmpty { chunks.remove(at: c) }
        return true
    }

    /// The position of the first element not less than `value` (or greater, when `after`).
    public func position(of value: Element, after: Bool = false) -> Index {
        var c = chunkFor(value)
        guard c < chunks.count else { return endIndex }
        var at = Self.lowerBound(chunks[c], value)
        if after {
            while at < chunks[c].count, !(value < chunks[c][at]) { at += 1 }
            if at == chunks[c].count {
                c += 1
                at = 0
                // Equal elements may continue into the next chunks.
                while c < chunks.count, !(value < chunks[c][0]) {
                    at = Self.lowerBound(chunks[c], value)
                    while at < chunks[c].count, !(value < chunks[c][at]) { at += 1 }
                    if at < chunks[c].count { break }
                    c += 1
                    at = 0
                }
                if c == chunks.count { return endIndex }
            }
        }
        return Index(chunk: c, offset: at)
    }

    public var startIndex: Index { chunks.isEmpty ? endIndex : Index(chunk: 0, offset: 0) }
    public var endIndex: Index { Index(chunk: chunks.count, offset: 0) }

    /// Calls `body` with each element from `start` in order until it returns false.
    public func scan(from start: Index, _ body: (Element) -> Bool) {
        var c = start.chunk, o = start.offset
        while c < chunks.count {
            let chunk = chunks[c]
            while o < chunk.count {
                if !body(chunk[o]) { return }
                o += 1
            }
            c += 1
            o = 0
        }
    }

    /// Every element in order (tests, small sets).
    public var elements: [Element] { chunks.flatMap { $0 } }
}
