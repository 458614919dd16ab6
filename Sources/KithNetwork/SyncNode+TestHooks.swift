import Foundation
import KithConsent
import KithCrypto
import KithSync

extension SyncNode {
    /// Test hook for the relay attack of consent.md §7: with `KITHD_TEST_FORGE_HUB_ANSWERS` set,
    /// this node, forwarding for a chapter peer, replaces the hub's answer with a forged
    /// "refused": `unsigned` (a bare `not-delivered` claiming a refusal), `other-key` (a
    /// well-formed refusal for exactly that request, signed by this node's device key) or
    /// `tampered` (the hub's genuine answer with its kind changed to refused). It grants nothing
    /// a modified peer could not do; tests use it to show that members are not fooled.
    func forgedHubAnswer(for request: SyncMessage, genuine: SyncMessage) -> SyncMessage? {
        guard let mode = ProcessInfo.processInfo.environment["KITHD_TEST_FORGE_HUB_ANSWERS"], !mode.isEmpty else { return nil }
        let bytes: [UInt8]
        switch request {
        case let .upward(b), let .revokeGrant(b): bytes = b
        default: return nil
        }
        logger.warning("test hook: forging the hub's answer", metadata: ["mode": "\(mode)"])
        switch mode {
        case "unsigned":
            return .notDelivered(reason: "the organization refused this record")
        case "tampered":
            guard case var .hubAnswer(answer) = genuine, answer.count > 2 else { return nil }
            answer[1] = HubAnswer.Kind.refused.rawValue
            return .hubAnswer(answer)
        default:
            return .hubAnswer(HubAnswer.make(.refused, request: bytes, member: nil, grantID: nil, version: 0, code: .noConsent,
                                             reason: "the organization refused this record", at: clock(), signer: identity.deviceKey).encoded)
        }
    }
}

/// How a hostile admin's daemon answers a join proof in tests (chapters.md §4: a joiner keeps
/// trying the invite's other daemons).
enum HostileJoinAnswer: Sendable {
    /// Completes the handshake, takes the proof and never answers.
    case silent
    /// Answers `join-held` without holding anything.
    case held
}

extension SyncNode {
    func setTestHookJoinAnswer(_ answer: HostileJoinAnswer?) { testHookJoinAnswer = answer }
}
