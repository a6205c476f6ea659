"""serve runs a Driver as a Prism plugin process (PROTOCOL.md §1–§5, §11)."""

import asyncio
import datetime
import inspect
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

import grpc
from google.protobuf import duration_pb2

import health_pb2
import health_pb2_grpc
from prism.keyvalue.v1 import keyvalue_pb2_grpc
from prism.lifecycle.v1 import lifecycle_pb2, lifecycle_pb2_grpc
from prism.pubsub.v1 import pubsub_pb2_grpc

from .driver import DEGRADED, HEALTHY, Health
from .errors import Status, truncate

PROTOCOL_VERSION = 1
MAGIC_ENV, MAGIC_VALUE = "PRISM_PLUGIN_MAGIC", "d4c1e1b0-prism-plugin"
MAX_MESSAGE_BYTES = 64 << 20
LIFECYCLE = "prism.lifecycle.v1.Lifecycle"
REQUEST_ID = "x-request-id"
# SHUTDOWN_GRACE bounds the drain on stdin EOF or SIGTERM: the host kills a
# plugin that has not exited 5 s after it closed stdin.
SHUTDOWN_GRACE = 2.0
# HEALTH_PROBE_TIMEOUT bounds the driver's backend probe in HealthCheck.
HEALTH_PROBE_TIMEOUT = 1.0

# The data services prismkit knows how to register, by full name.
_ADDERS = {
    "prism.keyvalue.v1.KeyValue": keyvalue_pb2_grpc.add_KeyValueServicer_to_server,
    "prism.pubsub.v1.PubSub": pubsub_pb2_grpc.add_PubSubServicer_to_server,
}

NEW, INITIALIZED, STARTED, DRAINING, STOPPED = "new", "initialized", "started", "draining", "stopped"

log = logging.getLogger("prism.plugin")


class _JSONFormatter(logging.Formatter):
    def format(self, record):
        out = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(),
            "level": record.levelname.replace("WARNING", "WARN"),
            "msg": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out)


def _setup_logging():
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(_JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [h]
    level = os.environ.get("PRISM_LOG_LEVEL", "info").upper().replace("WARN", "WARNING").replace("WARNINGING", "WARNING")
    root.setLevel(getattr(logging, level, logging.INFO))


class _Malformed:
    """_Malformed stands for a request message that did not decode."""

    def __init__(self, why):
        self.why = why


def _safe(deserializer):
    if deserializer is None:
        return None

    def decode(data):
        try:
            return deserializer(data)
        except Exception as e:  # DecodeError, and UnicodeDecodeError for a non-UTF-8 string
            return _Malformed(str(e))

    return decode


def _check_decoded(request):
    if isinstance(request, _Malformed):
        raise Status(grpc.StatusCode.INVALID_ARGUMENT, "request: does not decode: %s" % truncate(request.why))


async def _checked_iter(it):
    async for r in it:
        _check_decoded(r)
        yield r


class Plugin:
    """Plugin holds the lifecycle state and the counters of one process."""

    def __init__(self, driver):
        self.driver = driver
        self.state = NEW
        self.lock = asyncio.Lock()  # serialises lifecycle transitions
        self.inflight = 0
        self.open_streams = 0
        self.authorization_seen = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.draining = asyncio.Event()  # set when Drain begins: streams end with Unavailable
        self.services = dict(driver.servicers())
        self._health_changed = asyncio.get_running_loop().create_future()

    # Admission and counters (PROTOCOL.md §4, §5).

    def admit(self):
        if self.state == STARTED:
            return
        if self.state in (DRAINING, STOPPED):
            raise Status(grpc.StatusCode.UNAVAILABLE, "plugin is %s" % self.state)
        raise Status(grpc.StatusCode.FAILED_PRECONDITION, "plugin is %s: call Initialize and Start first" % self.state)

    def enter(self, stream):
        self.inflight += 1
        self.idle.clear()
        if stream:
            self.open_streams += 1

    def leave(self, stream):
        self.inflight -= 1
        if stream:
            self.open_streams -= 1
        if self.inflight == 0:
            self.idle.set()

    def standard_details(self):
        return {
            "prism.inflight_calls": str(self.inflight),
            "prism.open_streams": str(self.open_streams),
            "prism.authorization_headers_seen": str(self.authorization_seen),
        }

    # Health of the data services in grpc.health.v1.

    def data_serving(self):
        return self.state == STARTED

    def health_changed(self):
        fut, self._health_changed = self._health_changed, asyncio.get_running_loop().create_future()
        fut.set_result(None)

    async def wait_health_change(self):
        await asyncio.shield(self._health_changed)

    # Transitions.

    async def drain(self, timeout):
        if self.state == STARTED:
            self.state = DRAINING
            self.draining.set()
            self.health_changed()
            log.info("draining")
        if self.state != DRAINING:
            return 0
        try:
            if timeout is None:
                await self.idle.wait()
            elif timeout > 0:
                await asyncio.wait_for(self.idle.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return self.inflight

    async def stop(self, timeout):
        await self.drain(timeout)
        async with self.lock:
            if self.state == STOPPED:
                return
            prev = self.state
            self.state = STOPPED
            self.draining.set()
            self.health_changed()
            if prev != NEW:
                log.info("stopping")
                await self.driver.close()


def _request_id(metadata):
    for k, v in metadata or ():
        if k == REQUEST_ID:
            return v
    return None


def _has_authorization(metadata):
    return any(k.lower() == "authorization" for k, _ in (metadata or ()))


class _Interceptor(grpc.aio.ServerInterceptor):
    """_Interceptor wraps every handler: decode failures become InvalidArgument,
    x-request-id is echoed in the trailer, and data calls are counted and
    admitted by the lifecycle state."""

    def __init__(self, plugin):
        self.plugin = plugin

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        service = method.lstrip("/").split("/", 1)[0]
        data = service.startswith("prism.") and service != LIFECYCLE
        md = details.invocation_metadata
        if data and _has_authorization(md):
            self.plugin.authorization_seen += 1  # never the value: it is neither logged nor kept
        rid = _request_id(md)
        trailers = ((REQUEST_ID, rid),) if rid is not None else ()
        plugin = self.plugin

        async def run(call, context, stream):
            start = time.monotonic()
            code = grpc.StatusCode.OK
            if trailers:
                context.set_trailing_metadata(trailers)
            entered = False
            try:
                if data:
                    plugin.admit()
                    plugin.enter(stream)
                    entered = True
                if stream and data:
                    return await _until_drain(call(), plugin.draining)
                return await call()
            except Status as e:
                code = e.code
                await context.abort(e.code, e.message, trailers)
            except NotImplementedError:
                code = grpc.StatusCode.UNIMPLEMENTED
                await context.abort(code, "%s is not implemented" % method, trailers)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                code = None
                raise
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("call failed", extra={"fields": {"method": method}})
                await context.abort(code, "internal error in %s" % method, trailers)
            finally:
                if entered:
                    plugin.leave(stream)
                if log.isEnabledFor(logging.DEBUG):
                    f = {"method": method, "code": code.name if code else "aborted",
                         "duration_ms": round((time.monotonic() - start) * 1000, 3)}
                    if rid is not None:
                        f["request_id"] = rid
                    log.debug("call", extra={"fields": f})

        async def result(v):
            if inspect.isawaitable(v):
                return await v
            return v

        kw = {"request_deserializer": _safe(handler.request_deserializer)}
        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request, context):
                async def call():
                    _check_decoded(request)
                    return await result(inner(request, context))
                return await run(call, context, False)

            kw["unary_unary"] = unary_unary
        elif handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request, context):
                async def call():
                    _check_decoded(request)
                    await _drive(inner_us(request, context), context)
                return await run(call, context, True)

            kw["unary_stream"] = unary_stream
        elif handler.stream_unary:
            inner_su = handler.stream_unary

            async def stream_unary(request_iterator, context):
                async def call():
                    return await result(inner_su(_checked_iter(request_iterator), context))
                return await run(call, context, False)

            kw["stream_unary"] = stream_unary
        elif handler.stream_stream:
            inner_ss = handler.stream_stream

            async def stream_stream(request_iterator, context):
                async def call():
                    await _drive(inner_ss(_checked_iter(request_iterator), context), context)
                return await run(call, context, True)

            kw["stream_stream"] = stream_stream
        return handler._replace(**kw)


async def _until_drain(coro, draining):
    """_until_drain runs a streaming handler until it ends or the plugin
    drains; then it cancels it and ends the stream with Unavailable."""
    task = asyncio.ensure_future(coro)
    waiter = asyncio.ensure_future(draining.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    try:
        await task
    except BaseException:
        pass
    raise Status(grpc.StatusCode.UNAVAILABLE, "plugin is draining")


async def _drive(out, context):
    """_drive runs a streaming handler: an async generator's items are written."""
    if hasattr(out, "__aiter__"):
        async for item in out:
            await context.write(item)
    elif inspect.isawaitable(out):
        await out


def _duration(seconds):
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(round(seconds * 1e9)))
    return d


def _from_value(v):
    kind = v.WhichOneof("kind")
    if kind == "struct_value":
        return _from_struct(v.struct_value)
    if kind == "list_value":
        return [_from_value(x) for x in v.list_value.values]
    if kind == "number_value":
        return v.number_value
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    return None


def _from_struct(s):
    """_from_struct turns a google.protobuf.Struct into a dict; numbers stay floats."""
    return {k: _from_value(v) for k, v in s.fields.items()}


_STATUS = {
    HEALTHY: lifecycle_pb2.HealthCheckResponse.STATUS_HEALTHY,
    DEGRADED: lifecycle_pb2.HealthCheckResponse.STATUS_DEGRADED,
}
_MODES = {
    "drop_oldest": lifecycle_pb2.SlowConsumerPolicy.MODE_DROP_OLDEST,
    "block_publisher": lifecycle_pb2.SlowConsumerPolicy.MODE_BLOCK_PUBLISHER,
}


class _Lifecycle(lifecycle_pb2_grpc.LifecycleServicer):
    def __init__(self, plugin):
        self.p = plugin

    async def Describe(self, request, context):
        d = self.p.driver
        lim = d.limits()
        resp = lifecycle_pb2.DescribeResponse(
            name=d.name, version=d.version, protocol_version=PROTOCOL_VERSION,
            limits=lifecycle_pb2.Limits(**{k: int(v) for k, v in lim.items()}),
            info=dict(d.info(), sdk="python-prismkit/0.1.0"),
        )
        for c in d.capabilities():
            resp.capabilities.add(name=c, interface_version="v1")
        pol = d.slow_consumer()
        if pol:
            resp.slow_consumer.mode = _MODES[pol["mode"]]
            resp.slow_consumer.buffer_messages = int(pol["buffer_messages"])
            resp.slow_consumer.buffer_bytes = int(pol["buffer_bytes"])
            if pol.get("block_timeout"):
                resp.slow_consumer.block_timeout.CopyFrom(_duration(pol["block_timeout"]))
        return resp

    async def Initialize(self, request, context):
        async with self.p.lock:
            if self.p.state not in (NEW, INITIALIZED):
                raise Status(grpc.StatusCode.FAILED_PRECONDITION,
                             "initialize: plugin is %s; Initialize is allowed only before Start" % self.p.state)
            cfg = _from_struct(request.config)
            try:
                await self.p.driver.initialize(cfg, dict(request.credentials), request.namespace)
            except Status as e:
                log.warning("initialize failed", extra={"fields": {"error": e.message}})
                raise Status(e.code, "initialize: " + e.message)
            self.p.state = INITIALIZED
            log.info("initialized", extra={"fields": {"namespace": request.namespace, "config_keys": len(cfg),
                                                      "credentials": len(request.credentials)}})
        return lifecycle_pb2.InitializeResponse()

    async def Start(self, request, context):
        async with self.p.lock:
            if self.p.state == STARTED:
                return lifecycle_pb2.StartResponse()
            if self.p.state != INITIALIZED:
                raise Status(grpc.StatusCode.FAILED_PRECONDITION, "start: plugin is %s; call Initialize first" % self.p.state)
            self.p.state = STARTED
            self.p.health_changed()
            log.info("started")
        return lifecycle_pb2.StartResponse()

    async def Drain(self, request, context):
        timeout = request.deadline.ToTimedelta().total_seconds() if request.HasField("deadline") else None
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = remaining if timeout is None else min(timeout, remaining)
        return lifecycle_pb2.DrainResponse(in_flight=await self.p.drain(timeout))

    async def Stop(self, request, context):
        await self.p.stop(context.time_remaining())
        return lifecycle_pb2.StopResponse()

    async def HealthCheck(self, request, context):
        details = self.p.standard_details()  # counted when the call arrives
        st = self.p.state
        resp = lifecycle_pb2.HealthCheckResponse()
        if st in (NEW, STOPPED):
            resp.status = lifecycle_pb2.HealthCheckResponse.STATUS_UNHEALTHY
            resp.message = "plugin is " + st
        else:
            try:
                h = await asyncio.wait_for(self.p.driver.health(), HEALTH_PROBE_TIMEOUT)
            except asyncio.TimeoutError:
                h = Health("unhealthy", "the backend did not answer the health probe within %.0fs" % HEALTH_PROBE_TIMEOUT)
            resp.status = _STATUS.get(h.status, lifecycle_pb2.HealthCheckResponse.STATUS_UNHEALTHY)
            resp.message = h.message
            resp.details.update(h.details)
            if st == DRAINING and h.status == HEALTHY:
                resp.status = lifecycle_pb2.HealthCheckResponse.STATUS_DEGRADED
                resp.message = "draining"
        resp.details.update(details)
        return resp

    async def RotateCredentials(self, request, context):
        raise Status(grpc.StatusCode.UNIMPLEMENTED, "auth.rotation is not declared by this plugin")


_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _Health(health_pb2_grpc.HealthServicer):
    """_Health is grpc.health.v1: "" is SERVING while the server runs; each
    data service is SERVING only while the plugin is started."""

    def __init__(self, plugin):
        self.p = plugin

    def _status(self, service):
        if service == "":
            return _SERVING
        if service in self.p.services:
            return _SERVING if self.p.data_serving() else _NOT_SERVING
        raise Status(grpc.StatusCode.NOT_FOUND, "service: %s is not served" % truncate(service))

    async def Check(self, request, context):
        try:
            return health_pb2.HealthCheckResponse(status=self._status(request.service))
        except Status as e:
            await context.abort(e.code, e.message)

    async def Watch(self, request, context):
        last = None
        while True:
            if request.service == "" or request.service in self.p.services:
                st = self._status(request.service)
            else:
                st = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            if st != last:
                await context.write(health_pb2.HealthCheckResponse(status=st))
                last = st
            await self.p.wait_health_change()


def _refuse_hand_run():
    if os.environ.get(MAGIC_ENV) != MAGIC_VALUE:
        sys.stderr.write(
            "This program is a Prism plugin: it is started by a host, not by hand.\n"
            "Certify it with `prism-accept --plugin %s`, or run it through prism-proxy.\n" % sys.argv[0])
        sys.exit(1)


async def _listen(server):
    """_listen binds the listener the environment asks for and returns (network, address, cleanup)."""
    network = os.environ.get("PRISM_PLUGIN_NETWORK", "") or "unix"
    if network == "tcp":
        port = server.add_insecure_port("127.0.0.1:0")
        if not port:
            raise RuntimeError("listen on 127.0.0.1:0 failed")
        return network, "127.0.0.1:%d" % port, lambda: None
    if network != "unix":
        sys.stderr.write("PRISM_PLUGIN_NETWORK=%r is neither unix nor tcp\n" % truncate(network))
        sys.exit(1)
    made = None
    d = os.environ.get("PRISM_PLUGIN_SOCKET_DIR", "")
    if not d:
        d = made = tempfile.mkdtemp(prefix="prism-py-")
    path = os.path.join(d, "plugin-%d.sock" % os.getpid())
    if os.path.exists(path):
        os.unlink(path)
    if not server.add_insecure_port("unix:" + path):
        raise RuntimeError("listen on unix socket %s failed" % path)

    def cleanup():
        try:
            os.unlink(path)
        except OSError:
            pass
        if made:
            shutil.rmtree(made, ignore_errors=True)

    return network, path, cleanup


def _watch_stdin(loop, done):
    """_watch_stdin reads (and discards) stdin in a thread until EOF."""

    def run():
        try:
            while os.read(0, 65536):
                pass
        except OSError:
            pass
        loop.call_soon_threadsafe(done, "stdin closed")

    threading.Thread(target=run, name="stdin", daemon=True).start()


async def _main(driver):
    plugin = Plugin(driver)
    server = grpc.aio.server(
        interceptors=[_Interceptor(plugin)],
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.so_reuseport", 0)],
    )
    lifecycle_pb2_grpc.add_LifecycleServicer_to_server(_Lifecycle(plugin), server)
    health_pb2_grpc.add_HealthServicer_to_server(_Health(plugin), server)
    for name, servicer in plugin.services.items():
        _ADDERS[name](servicer, server)
    network, address, cleanup = await _listen(server)
    await server.start()

    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def done(why):
        if not stop.done():
            stop.set_result(why)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done, signal.Signals(sig).name)
    _watch_stdin(loop, done)

    sys.stdout.write("PRISM-PLUGIN|%d|%s|%s\n" % (PROTOCOL_VERSION, network, address))
    sys.stdout.flush()
    log.info("serving", extra={"fields": {"network": network, "address": address, "name": driver.name}})

    why = await stop
    log.info("shutting down", extra={"fields": {"reason": why}})
    try:
        await asyncio.wait_for(plugin.stop(SHUTDOWN_GRACE), SHUTDOWN_GRACE + 1)
    except Exception:
        log.exception("stop failed")
    await server.stop(0.5)
    cleanup()


def serve(driver):
    """serve runs driver as a Prism plugin process until stdin closes or a
    SIGTERM/SIGINT arrives, then exits 0. Run by hand (no PRISM_PLUGIN_MAGIC)
    it says how to run it and exits 1."""
    _setup_logging()
    _refuse_hand_run()
    asyncio.run(_main(driver))
    sys.exit(0)
