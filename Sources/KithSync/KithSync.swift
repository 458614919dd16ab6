// KithSync: the Noise_XX handshake and the sync session, as sans-I/O state machines, plus the
// SwiftNIO handlers that drive them. Filled by the sync issue; see Protocol/sync.md when it lands.

/// The protocol name every Kith transport handshake uses (Noise spec revision 34).
public enum SyncProtocol {
    public static let noiseProtocolName = "Noise_XX_25519_ChaChaPoly_BLAKE2b"
}
