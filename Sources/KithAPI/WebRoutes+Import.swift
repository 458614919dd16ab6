import Foundation
import Hummingbird
import KithCRDT
import KithCrypto
import KithInterchange
import KithNetwork
import KithQuery
import KithWeb
import NIOCore

/// Import (upload → preview → confirm → live progress → problems) and export.
extension WebRoutes {
    func registerImport(on router: Router<Context>) {
        router.get("/import", use: page { request, _, s in
            html(request, "import", title: pages.text("import_title"), data: [:], session: s, nav: "import")
        })
        router.post("/import", use: form(limit: configuration.maxEditsBody) { request, _, s, f in
            guard let file = f.files["file"], !file.bytes.isEmpty else { throw Refusal(status: .badRequest, message: pages.text("error_no_file")) }
            // A region: an ISO code (GB) or, as the form long asked, a calling code (44).
            var region: PhoneRegion?
            if let r = f["country"]?.trimmingCharacters(in: CharacterSet(charactersIn: "+ ")), !r.isEmpty {
                guard let parsed = PhoneRegion(code: r) ?? PhoneRegion(callingCode: r) else { throw Refusal(status: .badRequest, message: pages.text("error_country")) }
                region = parsed
            }
            let existing = await node.allContacts().map(ContactDTO.init)
            let plan: ImportPlan
            do {
                plan = try ImportPlan.make(filename: file.filename, bytes: file.bytes, region: region, existing: existing)
            } catch {
                throw Refusal(status: .badRequest, message: "\(file.filename) \(error)")
            }
            let job = await imports.add(plan, owner: s.token)
            return html(request, "import-preview", title: pages.text("import_title"), data: ["plan": planData(job, plan, committed: 0, finished: false, failure: nil)],
                        session: s, nav: "import")
        })
        router.post("/import/{job}/start", use: form { _, context, s, _ in
            let id = context.parameters.get("job") ?? ""
            guard await imports.start(id, owner: s.token, node: node) else { throw Refusal(status: .notFound, message: pages.text("import_gone")) }
            return Self.redirect("/import/\(id)")
        })
        router.get("/import/{job}", use: page { request, context, s in
            let id = context.parameters.get("job") ?? ""
            guard let job = await imports.job(id, owner: s.token) else { throw Refusal(status: .notFound, message: pages.text("import_gone")) }
            return html(request, "import-job", title: pages.text("import_title"),
                        data: ["plan": planData(id, job.plan, committed: job.committed, finished: job.finished, failure: job.failure)], session: s, nav: "import")
        })
        router.get("/import/{job}/progress", use: page { _, context, s in
            let id = context.parameters.get("job") ?? ""
            guard let job = await imports.job(id, owner: s.token) else { throw Refusal(status: .notFound, message: pages.text("import_gone")) }
            let total = job.plan.edits.count
            return APIServer.json(["committed": job.committed, "total": total, "finished": job.finished,
                                   "percent": total == 0 ? 100 : job.committed * 100 / total])
        })
        router.get("/export", use: page { request, _, _ in
            let csv = request.uri.queryParameters.get("format")?.lowercased() == "csv"
            let contacts = await node.allContacts()
            let text = csv ? CSVInterchange.write(contacts) : VCard.write(contacts)
            var h = Self.pageHeaders(type: csv ? "text/csv; charset=utf-8" : "text/vcard; charset=utf-8")
            h[.contentDisposition] = "attachment; filename=\"kith-contacts.\(csv ? "csv" : "vcf")\""
            return Response(status: .ok, headers: h, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        })
    }

    func planData(_ job: String, _ plan: ImportPlan, committed: Int, finished: Bool, failure: String?) -> [String: Any] {
        let total = plan.edits.count
        var d: [String: Any] = [
            "job": job, "filename": plan.filename, "format": plan.formatSummary, "created": plan.created, "merged": plan.merged, "unchanged": plan.unchanged,
            "dropped": plan.dropped.map { ["field": $0.field, "count": $0.count] }, "hasDropped": !plan.dropped.isEmpty,
            "skipped": plan.skipped, "total": total, "committed": committed, "finished": finished,
            "percent": total == 0 ? 100 : committed * 100 / total,
            "problems": plan.problems.prefix(500).map { ["origin": $0.origin, "reason": $0.reason] },
        ]
        if let failure { d["failure"] = failure }
        return d
    }
}

/// Uploaded imports waiting for confirmation or running, each visible only to the session that
/// uploaded it; at most 8 are kept (the oldest goes). In memory: a restart forgets them (nothing
/// of an unconfirmed import was written; a running one's committed batches are durable).
actor WebImportJobs {
    struct Job: Sendable {
        let plan: ImportPlan
        let owner: String
        let created: Date
        var committed = 0
        var started = false
        var finished = false
        var failure: String?
    }

    private var jobs: [String: Job] = [:]

    func add(_ plan: ImportPlan, owner: String) -> String {
        if jobs.count >= 8, let oldest = jobs.filter({ !$0.value.started || $0.value.finished }).min(by: { $0.value.created < $1.value.created })?.key {
            jobs[oldest] = nil
        }
        let id = Base64URL.encode(SecureRandom.bytes(12))
        jobs[id] = Job(plan: plan, owner: owner, created: Date())
        return id
    }

    func job(_ id: String, owner: String) -> Job? {
        guard let j = jobs[id], j.owner == owner else { return nil }
        return j
    }

    /// Starts writing the job's batches (once); false when the job is unknown to this session.
    func start(_ id: String, owner: String, node: SyncNode) -> Bool {
        guard var j = jobs[id], j.owner == owner else { return false }
        guard !j.started else { return true }
        j.started = true
        jobs[id] = j
        let batches = j.plan.batches()
        Task {
            for batch in batches {
                do {
                    try await node.commitEdits(batch)
                } catch {
                    self.fail(id, "\(error)")
                    return
                }
                self.advance(id, by: batch.reduce(0) { $0 + $1.count })
            }
            self.finish(id)
        }
        return true
    }

    private func advance(_ id: String, by n: Int) { jobs[id]?.committed += n }
    private func finish(_ id: String) { jobs[id]?.finished = true }
    private func fail(_ id: String, _ message: String) {
        jobs[id]?.failure = message
        jobs[id]?.finished = true
    }
}
