import Foundation
import KithSystemd
import Logging

extension KithDaemon {
    /// Files through which clients find a running kithd. Only called while this process holds the
    /// store's lock, so none of them can belong to a live kithd: a crash or `kill -9` left them.
    static let addressFiles = ["kithd.sock", "kithd.port", "kithd.api", "kithd.gui"]

    static func removeStaleFiles(in dir: String, logger: Logger) {
        for name in addressFiles where FileManager.default.fileExists(atPath: dir + "/" + name) {
            do {
                try FileManager.default.removeItem(atPath: dir + "/" + name)
                logger.notice("removed a stale file left by a kithd that did not stop cleanly", metadata: ["path": "\(dir)/\(name)"])
            } catch {
                logger.warning("cannot remove a stale file", metadata: ["path": "\(dir)/\(name)", "reason": "\(error)"])
            }
        }
    }

    /// READY=1 once the peer port and the API are bound and the stores are open (Type=notify).
    static func notifyReady(_ notifier: ServiceNotifier?, status: String, logger: Logger) {
        guard let notifier else { return }
        if let reason = notifier.send(ServiceNotifier.ready(status: status)) {
            logger.warning("cannot tell systemd kithd is ready", metadata: ["socket": "\(notifier.socketPath)", "reason": "\(reason)"])
        }
    }
}
