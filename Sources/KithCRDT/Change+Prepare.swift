import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The work a replica does on a received change that depends on that change alone — checking
/// its digest and signature, decoding its blocks — done for a whole batch at once, across cores,
/// before the replica applies the batch in order on one thread.
extension Change {
    /// Batches smaller than this many encoded bytes are prepared on the calling thread.
    static let parallelThreshold = 64 << 10

    /// Checks (when `verify`) and checks the ops of (when `decode`, plaintext scopes) every change of
    /// `changes` in parallel. A change that fails is left as it was: the replica checks it again
    /// and refuses it with the same error, in batch order.
    static func prepare(_ changes: inout [Change], verify: Bool, decode: Bool) {
        let bytes = changes.reduce(0) { $0 + $1.encoded.count }
        let lanes = bytes < parallelThreshold ? 1 : min(changes.count, max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
        changes.withUnsafeMutableBufferPointer { buffer in
            guard lanes > 1 else {
                for i in buffer.indices { buffer[i].prepareAlone(verify: verify, decode: decode) }
                return
            }
            let shared = Lanes(buffer: buffer)
            // Lane k takes every lanes-th change: each element is written by one lane only.
            DispatchQueue.concurrentPerform(iterations: lanes) { lane in
                for i in stride(from: lane, to: shared.buffer.count, by: lanes) {
                    shared.buffer[i].prepareAlone(verify: verify, decode: decode)
                }
            }
        }
    }

    /// The batch's buffer, shared by the lanes of one `concurrentPerform`.
    // @unchecked: each lane writes only its own elements (i ≡ lane mod lanes), and the buffer
    // outlives the concurrentPerform call, which returns only once every lane finished.
    private struct Lanes: @unchecked Sendable {
        let buffer: UnsafeMutableBufferPointer<Change>
    }

    private mutating func prepareAlone(verify: Bool, decode: Bool) {
        if verify && !authenticatedByChain {
            do { try self.verify() } catch { return }
            preverified = true
        }
        if decode, (try? checkPlainBlocks()) != nil { plainChecked = true }
    }
}
