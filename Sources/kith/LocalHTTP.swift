import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// One HTTP/1.1 exchange with the local API over SwiftNIO (NIOHTTP1 encodes the request and
/// decodes the answer). The CLI makes one or two requests per run to 127.0.0.1, so it needs no
/// connection pool, TLS or retries — AsyncHTTPClient's machinery cost the CLI ~10 ms and ~7 MB
/// per command (Benchmarks: `kith-bench cli`).
enum LocalHTTP {
    struct Response {
        let status: Int
        let headers: HTTPHeaders
        let body: [UInt8]
    }

    enum Failure: Error {
        /// Nothing listens there: the request was not sent.
        case refused
        case timedOut
        case other(String)
    }

    /// Collects one response, then closes the channel.
    final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPClientResponsePart
        let promise: EventLoopPromise<Response>
        private var head: HTTPResponseHead?
        private var body: [UInt8] = []

        init(promise: EventLoopPromise<Response>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case let .head(h): head = h
            case var .body(b): body += b.readBytes(length: b.readableBytes) ?? []
            case .end:
                promise.succeed(Response(status: Int(head?.status.code ?? 0), headers: head?.headers ?? [:], body: body))
                context.close(promise: nil)
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(Failure.other("kithd closed the connection before answering"))
        }
    }

    /// Sends one request and waits for the answer (blocking the calling thread, which is not an
    /// event loop: the CLI's main thread).
    static func exchange(host: String, port: Int, method: HTTPMethod, path: String, headers: [(String, String)], body: [UInt8]?,
                         timeout: TimeAmount) throws(Failure) -> Response {
        let group = MultiThreadedEventLoopGroup.singleton
        let loop = group.next()
        let promise = loop.makePromise(of: Response.self)
        let channel: any Channel
        do {
            channel = try ClientBootstrap(group: loop)
                .connectTimeout(.seconds(3))
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHTTPClientHandlers()
                        try ch.pipeline.syncOperations.addHandler(Collector(promise: promise))
                    }
                }
                .connect(host: host, port: port).wait()
        } catch let e as NIOConnectionError {
            promise.fail(Failure.refused)
            if e.connectionErrors.contains(where: { ($0.error as? IOError)?.errnoCode == ECONNREFUSED }) { throw .refused }
            throw .other("cannot connect to \(host):\(port): \(e)")
        } catch ChannelError.connectTimeout {
            promise.fail(Failure.timedOut)
            throw .timedOut
        } catch let e as IOError where e.errnoCode == ECONNREFUSED {
            promise.fail(Failure.refused)
            throw .refused
        } catch {
            promise.fail(Failure.refused)
            if "\(error)".contains("refused") { throw .refused }
            throw .other("cannot connect to \(host):\(port): \(error)")
        }
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")
        head.headers.add(name: "Connection", value: "close")
        for (k, v) in headers { head.headers.add(name: k, value: v) }
        head.headers.add(name: "Content-Length", value: "\(body?.count ?? 0)")
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body, !body.isEmpty { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let timer = loop.scheduleTask(in: timeout) { promise.fail(Failure.timedOut); channel.close(promise: nil) }
        defer { timer.cancel() }
        do {
            return try promise.futureResult.wait()
        } catch let e as Failure {
            throw e
        } catch {
            throw .other("\(error)")
        }
    }
}
