import Foundation
import KithLogging
import Logging
import Testing

/// Collects the lines a handler writes.
final class LineSink: @unchecked Sendable {
    // @unchecked: `lines` is only touched under `lock`.
    private let lock = NSLock()
    private var stored: [String] = []
    var lines: [String] { lock.withLock { stored } }
    func write(_ line: String) { lock.withLock { stored.append(line) } }
}

@Suite("kithd's log lines")
struct DaemonLoggingTests {
    // 2026-12-03T07:08:28.123Z
    let date = Date(timeIntervalSince1970: 1_796_281_708.123)

    @Test func textPutsTheMessageFirstThenSortedMetadata() {
        let line = KithLogHandler.line(format: .text, date: date, level: .info, label: "kithd", message: "peer authenticated",
                                       metadata: ["peer": "10.0.0.5:7434", "device": "mGh2", "reason": "bad \"sig\" here"])
        #expect(line == "2026-12-03T07:08:28.123Z info kithd: peer authenticated device=mGh2 peer=10.0.0.5:7434 reason=\"bad \\\"sig\\\" here\"\n")
    }

    @Test func journalHasThePriorityAndNoTimestamp() {
        let levels: [(Logger.Level, Int)] = [(.trace, 7), (.debug, 7), (.info, 6), (.notice, 5), (.warning, 4), (.error, 3), (.critical, 2)]
        for (level, priority) in levels {
            let line = KithLogHandler.line(format: .journal, date: date, level: level, label: "kithd", message: "m", metadata: ["k": "v"])
            #expect(line == "<\(priority)>kithd: m k=v\n")
        }
    }

    @Test func jsonIsOneObjectPerLineWithStableKeys() throws {
        let line = KithLogHandler.line(format: .json, date: date, level: .warning, label: "kithd", message: "two\nlines \"quoted\"",
                                       metadata: ["zeta": "1", "alpha": .array(["a", "b"]), "msg": "clash"])
        #expect(line.hasSuffix("}\n") && line.dropLast().contains("\n") == false)
        #expect(line.hasPrefix(#"{"ts":"2026-12-03T07:08:28.123Z","level":"warning","label":"kithd","msg":"two\nlines \"quoted\"","alpha":"a,b","_msg":"clash","zeta":"1"}"#))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["msg"] == "two\nlines \"quoted\"" && object["_msg"] == "clash" && object["level"] == "warning")
    }

    @Test func oneEventIsOneLineWhateverItCarries() {
        for format in LogFormat.allCases {
            let line = KithLogHandler.line(format: format, date: date, level: .error, label: "kithd", message: "a\nb\r\u{1b}[31mc",
                                           metadata: ["reason": "x\ny", "empty": ""])
            #expect(line.filter { $0 == "\n" }.count == 1 && line.last == "\n", "\(format): \(line)")
            #expect(!line.contains("\u{1b}"), "\(format): a terminal escape reached the log")
        }
        let text = KithLogHandler.line(format: .text, date: date, level: .error, label: "kithd", message: "m", metadata: ["empty": "", "eq": "a=b"])
        #expect(text.hasSuffix("m empty=\"\" eq=\"a=b\"\n"))
    }

    @Test func socketAddressesArePrintedAsHostPort() {
        let nio = "Connection errors: SingleConnectionFailure(target: [IPv4]127.0.0.1/127.0.0.1:9, error: refused), [IPv6]::1/::1:7434"
        #expect(KithLogHandler.plainAddresses(nio) == "Connection errors: SingleConnectionFailure(target: 127.0.0.1:9, error: refused), [::1]:7434")
        #expect(KithLogHandler.plainAddresses("[IPv4]laptop.lan/192.168.1.4:7434") == "192.168.1.4:7434")
        #expect(KithLogHandler.plainAddresses("no address [IPv5] here [IPv4]") == "no address [IPv5] here [IPv4]")
        let line = KithLogHandler.line(format: .text, date: date, level: .info, label: "kithd", message: "from [IPv4]h/10.0.0.1:1",
                                       metadata: ["peer": "[IPv4]h/10.0.0.2:2"])
        #expect(line.hasSuffix("kithd: from 10.0.0.1:1 peer=10.0.0.2:2\n"))
    }

    @Test func journaldIsDetectedByTheStreamsDeviceAndInode() {
        #expect(JournalDetection.isJournal(environment: ["JOURNAL_STREAM": "8:12345"], stderrDevice: 8, stderrInode: 12345))
        // stderr redirected elsewhere (a file): the variable is inherited but no longer true.
        #expect(!JournalDetection.isJournal(environment: ["JOURNAL_STREAM": "8:12345"], stderrDevice: 8, stderrInode: 999))
        #expect(!JournalDetection.isJournal(environment: [:], stderrDevice: 8, stderrInode: 12345))
        #expect(!JournalDetection.isJournal(environment: ["JOURNAL_STREAM": "garbage"], stderrDevice: 8, stderrInode: 12345))
    }

    @Test func levelAndFormatChangeForEveryLoggerAtOnce() {
        let sink = LineSink()
        let settings = LogSettings(level: .info, format: .text)
        var a = Logger(label: "a") { KithLogHandler(label: $0, settings: settings, sink: sink.write) }
        let b = Logger(label: "b") { KithLogHandler(label: $0, settings: settings, sink: sink.write) }
        b.debug("hidden")
        settings.level = .debug
        settings.format = .journal
        b.debug("shown")
        a.logLevel = .error // one logger's own level wins for that logger only
        a.warning("hidden too")
        b.warning("b still logs", metadata: ["k": "v"])
        #expect(sink.lines == ["<7>b: shown\n", "<4>b: b still logs k=v\n"])
    }
}
