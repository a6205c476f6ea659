"""memstore: Prism's in-memory plugin, in Python.

Declares keyvalue.basic, keyvalue.ttl, keyvalue.scan and pubsub.basic, with
the drop-oldest slow-consumer policy. Everything runs on one asyncio event
loop, so a call's read-modify-write never interleaves with another's.

Keys are kept in a dict and a sorted list, so Scan walks them in byte order
(UTF-8 byte order is code-point order) and its cursor, the last key returned,
gives every key present for the whole scan exactly once. Expiry is exact from
the caller's view: every read checks the deadline; a sweeper only reclaims
memory.
"""

import asyncio
import base64
import bisect
import collections
import itertools
import re
import time

import grpc
from google.protobuf import timestamp_pb2

from prism.keyvalue.v1 import keyvalue_pb2 as kv
from prism.keyvalue.v1 import keyvalue_pb2_grpc as kv_grpc
from prism.pubsub.v1 import pubsub_pb2 as ps
from prism.pubsub.v1 import pubsub_pb2_grpc as ps_grpc

from prismkit import ConfigError, Driver, Health, Status, invalid, unimplemented

VERSION = "0.1.0"

DEFAULTS = {
    "max_keys": 1_000_000,
    "max_key_bytes": 1024,
    "max_value_bytes": 1 << 20,
    "max_payload_bytes": 1 << 20,
    "buffer_messages": 1024,
    "buffer_bytes": 8 << 20,
    "sweep_interval": 1.0,
}
MAX_BATCH = 1000
MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_TOPIC_BYTES = 256
MAX_METADATA_ENTRIES = 64
MAX_METADATA_BYTES = 8 << 10
# Duration bounds of google.protobuf.Duration (about 10 000 years).
MAX_DURATION_SECONDS = 315_576_000_000

_GO_DURATION = re.compile(r"([0-9]*(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+")
_GO_UNIT = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_duration(s):
    """parse_duration reads a Go-style duration ("1s", "500ms", "1m30s", "0") in seconds, or None."""
    if s == "0":
        return 0.0
    if not _GO_DURATION.fullmatch(s):
        return None
    total = 0.0
    for num, unit in _GO_UNIT.findall(s):
        if num in ("", "."):
            return None
        total += float(num) * _UNITS[unit]
    return total


def _positive_int(field, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v <= 0:
        raise ConfigError(field, "must be a positive integer, got %r" % (v,))
    return int(v)


def _ttl(field, msg, present):
    """_ttl checks a Duration field and returns seconds, or None when absent."""
    if not present:
        return None
    s, n = msg.seconds, msg.nanos
    if abs(s) > MAX_DURATION_SECONDS or abs(n) > 999_999_999 or (s > 0 and n < 0) or (s < 0 and n > 0):
        raise invalid(field, "not a valid duration")
    secs = s + n / 1e9
    if s * 1_000_000_000 + n < 1_000_000:
        raise invalid(field, "must be at least 1ms, got %gs" % secs)
    return secs


class _Item:
    __slots__ = ("value", "expires")

    def __init__(self, value, expires):
        self.value = value
        self.expires = expires  # time.monotonic() deadline, or None


class MemStore(Driver):
    """MemStore is the driver: a key-value store and a topic bus in process memory."""

    name = "python-memstore"
    version = VERSION

    def __init__(self):
        self.opts = dict(DEFAULTS)
        self.items = {}
        self.keys = []  # sorted
        self.topics = collections.defaultdict(set)
        self.ids = itertools.count(1)
        self.sweeper = None

    # Driver.

    def capabilities(self):
        return ["keyvalue.basic", "keyvalue.ttl", "keyvalue.scan", "pubsub.basic"]

    def limits(self):
        return {"max_key_bytes": self.opts["max_key_bytes"], "max_value_bytes": self.opts["max_value_bytes"],
                "max_batch_size": MAX_BATCH, "max_page_size": MAX_PAGE, "max_topic_bytes": MAX_TOPIC_BYTES,
                "max_payload_bytes": self.opts["max_payload_bytes"]}

    def info(self):
        return {"backend": "in-process memory (Python)"}

    def slow_consumer(self):
        return {"mode": "drop_oldest", "buffer_messages": self.opts["buffer_messages"],
                "buffer_bytes": self.opts["buffer_bytes"]}

    def servicers(self):
        return {"prism.keyvalue.v1.KeyValue": KeyValue(self), "prism.pubsub.v1.PubSub": PubSub(self)}

    async def initialize(self, config, credentials, namespace):
        o = dict(DEFAULTS)
        for field, v in config.items():
            if field in ("max_keys", "max_key_bytes", "max_value_bytes", "max_payload_bytes",
                         "buffer_messages", "buffer_bytes"):
                o[field] = _positive_int(field, v)
            elif field == "sweep_interval":
                if not isinstance(v, str):
                    raise ConfigError(field, 'must be a duration string such as "1s", got %s' % type(v).__name__)
                d = parse_duration(v)
                if d is None or d < 0:
                    raise ConfigError(field, 'must be a non-negative duration such as "1s", got %r' % v)
                o[field] = d
            else:
                raise ConfigError(field, "unknown field (known: %s)" % ", ".join(sorted(DEFAULTS)))
        self.opts = o
        self._stop_sweeper()
        if o["sweep_interval"] > 0:
            self.sweeper = asyncio.get_running_loop().create_task(self._sweep(o["sweep_interval"]))

    async def health(self):
        return Health("healthy", "", {"python_memstore.keys": str(len(self.items))})

    async def close(self):
        self._stop_sweeper()

    def _stop_sweeper(self):
        if self.sweeper:
            self.sweeper.cancel()
            self.sweeper = None

    async def _sweep(self, every):
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            for k in [k for k, it in self.items.items() if it.expires is not None and it.expires <= now]:
                self._remove(k)

    # The key space.

    def _live(self, key):
        it = self.items.get(key)
        if it is None:
            return None
        if it.expires is not None and it.expires <= time.monotonic():
            self._remove(key)
            return None
        return it

    def _remove(self, key):
        if self.items.pop(key, None) is not None:
            i = bisect.bisect_left(self.keys, key)
            if i < len(self.keys) and self.keys[i] == key:
                del self.keys[i]

    def _put(self, key, value, ttl):
        expires = time.monotonic() + ttl if ttl is not None else None
        it = self._live(key)
        if it is None:
            if len(self.items) >= self.opts["max_keys"]:
                raise Status(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             "key: store holds %d keys, the configured max_keys" % len(self.items))
            self.items[key] = _Item(value, expires)
            bisect.insort(self.keys, key)
        else:
            it.value, it.expires = value, expires

    def check_key(self, field, key):
        if key == "":
            raise invalid(field, "must not be empty")
        n = len(key.encode("utf-8"))
        if n > self.opts["max_key_bytes"]:
            raise invalid(field, "%d bytes exceeds the limit of %d bytes" % (n, self.opts["max_key_bytes"]))

    def check_value(self, field, value):
        if len(value) > self.opts["max_value_bytes"]:
            raise invalid(field, "%d bytes exceeds the limit of %d bytes" % (len(value), self.opts["max_value_bytes"]))

    # The bus.

    def check_topic(self, field, topic):
        n = len(topic.encode("utf-8"))
        if n == 0:
            raise invalid(field, "must not be empty")
        if n > MAX_TOPIC_BYTES:
            raise invalid(field, "%d bytes exceeds the limit of %d bytes" % (n, MAX_TOPIC_BYTES))
        if _CONTROL.search(topic):
            raise invalid(field, "must not contain control characters")

    def check_message(self, prefix, topic, payload, metadata):
        self.check_topic(prefix + "topic", topic)
        if len(payload) > self.opts["max_payload_bytes"]:
            raise invalid(prefix + "payload", "%d bytes exceeds the limit of %d bytes" %
                          (len(payload), self.opts["max_payload_bytes"]))
        field = prefix + "metadata"
        if len(metadata) > MAX_METADATA_ENTRIES:
            raise invalid(field, "%d entries exceed the limit of %d" % (len(metadata), MAX_METADATA_ENTRIES))
        total = 0
        for k, v in metadata.items():
            if not _NAME.fullmatch(k):
                raise invalid(field, "key %r must be 1 to 128 bytes of letters, digits, '-', '_' and '.'" % k[:64])
            total += len(k) + len(v.encode("utf-8"))
        if total > MAX_METADATA_BYTES:
            raise invalid(field, "%d bytes of keys and values exceed the limit of %d" % (total, MAX_METADATA_BYTES))

    def publish(self, topic, payload, metadata):
        mid = str(next(self.ids))
        ts = timestamp_pb2.Timestamp()
        ts.GetCurrentTime()
        msg = ps.Message(topic=topic, payload=payload, metadata=metadata, id=mid, publish_time=ts)
        for sub in list(self.topics.get(topic, ())):
            sub.push(msg, len(payload))
        return mid


class KeyValue(kv_grpc.KeyValueServicer):
    """KeyValue serves prism.keyvalue.v1: basic, ttl and scan; batch is Unimplemented."""

    def __init__(self, store):
        self.s = store

    async def Set(self, req, context):
        self.s.check_key("key", req.key)
        self.s.check_value("value", req.value)
        ttl = _ttl("ttl", req.ttl, req.HasField("ttl"))
        self.s._put(req.key, req.value, ttl)
        return kv.SetResponse()

    async def Get(self, req, context):
        self.s.check_key("key", req.key)
        it = self.s._live(req.key)
        if it is None:
            raise Status(grpc.StatusCode.NOT_FOUND, "key: not found")
        return kv.GetResponse(value=it.value)

    async def Delete(self, req, context):
        self.s.check_key("key", req.key)
        existed = self.s._live(req.key) is not None
        self.s._remove(req.key)
        return kv.DeleteResponse(existed=existed)

    async def Exists(self, req, context):
        self.s.check_key("key", req.key)
        return kv.ExistsResponse(exists=self.s._live(req.key) is not None)

    def _must(self, key):
        self.s.check_key("key", key)
        it = self.s._live(key)
        if it is None:
            raise Status(grpc.StatusCode.NOT_FOUND, "key: not found")
        return it

    async def Expire(self, req, context):
        self.s.check_key("key", req.key)
        if not req.HasField("ttl"):
            raise invalid("ttl", "must be set")
        ttl = _ttl("ttl", req.ttl, True)
        it = self._must(req.key)
        it.expires = time.monotonic() + ttl
        return kv.ExpireResponse()

    async def GetTTL(self, req, context):
        it = self._must(req.key)
        if it.expires is None:
            return kv.GetTTLResponse(has_expiry=False)
        resp = kv.GetTTLResponse(has_expiry=True)
        remaining = max(it.expires - time.monotonic(), 1e-9)
        resp.ttl.FromNanoseconds(max(int(remaining * 1e9), 1))
        return resp

    async def Persist(self, req, context):
        it = self._must(req.key)
        had = it.expires is not None
        it.expires = None
        return kv.PersistResponse(had_expiry=had)

    async def Scan(self, req, context):
        prefix = req.prefix
        if len(prefix.encode("utf-8")) > self.s.opts["max_key_bytes"]:
            raise invalid("prefix", "must be at most %d bytes" % self.s.opts["max_key_bytes"])
        size = req.page_size
        if size < 0:
            raise invalid("page_size", "must not be negative, got %d" % size)
        if size == 0:
            size = DEFAULT_PAGE
        if size > MAX_PAGE:
            raise invalid("page_size", "%d exceeds the limit of %d" % (size, MAX_PAGE))
        after = _decode_cursor(req.cursor, prefix) if req.cursor else None
        keys = self.s.keys
        i = bisect.bisect_right(keys, after) if after is not None else bisect.bisect_left(keys, prefix)
        resp = kv.ScanResponse()
        last = None
        while i < len(keys) and keys[i].startswith(prefix):
            if len(resp.entries) == size:
                resp.next_cursor = _encode_cursor(prefix, last)
                break
            k = keys[i]
            it = self.s.items[k]
            i += 1
            if it.expires is not None and it.expires <= time.monotonic():
                continue  # expired: reclaimed by the sweeper, invisible now
            e = resp.entries.add(key=k)
            if req.include_values:
                e.value = it.value
            last = k
        return resp

    async def Count(self, req, context):
        now = time.monotonic()
        keys = self.s.keys
        i = bisect.bisect_left(keys, req.prefix)
        n = 0
        while i < len(keys) and keys[i].startswith(req.prefix):
            it = self.s.items[keys[i]]
            if it.expires is None or it.expires > now:
                n += 1
            i += 1
        return kv.CountResponse(count=n)

    async def BatchSet(self, req, context):
        raise unimplemented("keyvalue.batch")

    async def BatchGet(self, req, context):
        raise unimplemented("keyvalue.batch")

    async def BatchDelete(self, req, context):
        raise unimplemented("keyvalue.batch")


_CURSOR_TAG = b"pm1\x00"


def _encode_cursor(prefix, last):
    raw = _CURSOR_TAG + prefix.encode("utf-8") + b"\x00" + last.encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode_cursor(cursor, prefix):
    """_decode_cursor returns the last key of the previous page; a cursor this
    plugin did not make for this prefix is InvalidArgument naming cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii"))
        if not raw.startswith(_CURSOR_TAG):
            raise ValueError("no tag")
        p, sep, last = raw[len(_CURSOR_TAG):].partition(b"\x00")
        if not sep or p.decode("utf-8") != prefix:
            raise ValueError("another prefix")
        last = last.decode("utf-8")
        if not last.startswith(prefix):
            raise ValueError("outside the prefix")
        return last
    except (ValueError, UnicodeError):
        raise invalid("cursor", "not a cursor this plugin returned for this prefix")


class _Subscription:
    """_Subscription is one subscriber's bounded buffer (drop-oldest)."""

    def __init__(self, max_messages, max_bytes):
        self.buf = collections.deque()
        self.bytes = 0
        self.dropped = 0
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self.wake = asyncio.Event()

    def push(self, msg, size):
        self.buf.append((msg, size))
        self.bytes += size
        while len(self.buf) > 1 and (len(self.buf) > self.max_messages or self.bytes > self.max_bytes):
            _, n = self.buf.popleft()
            self.bytes -= n
            self.dropped += 1
        self.wake.set()

    def pop(self):
        msg, n = self.buf.popleft()
        self.bytes -= n
        return msg


class PubSub(ps_grpc.PubSubServicer):
    """PubSub serves prism.pubsub.v1: basic; queue groups and durable consumers are Unimplemented."""

    def __init__(self, store):
        self.s = store

    async def Publish(self, req, context):
        self.s.check_message("", req.topic, req.payload, req.metadata)
        return ps.PublishResponse(id=self.s.publish(req.topic, req.payload, dict(req.metadata)))

    async def PublishBatch(self, req, context):
        if len(req.messages) > MAX_BATCH:
            raise invalid("messages", "batch of %d exceeds the limit of %d" % (len(req.messages), MAX_BATCH))
        for i, m in enumerate(req.messages):
            self.s.check_message("messages[%d]." % i, m.topic, m.payload, m.metadata)
        ids = [self.s.publish(m.topic, m.payload, dict(m.metadata)) for m in req.messages]
        return ps.PublishBatchResponse(ids=ids)

    async def Ack(self, req, context):
        raise unimplemented("pubsub.durable")

    async def DeleteDurable(self, req, context):
        raise unimplemented("pubsub.durable")

    async def Subscribe(self, requests, context):
        try:
            first = await requests.__anext__()
        except StopAsyncIteration:
            raise invalid("subscription", "the stream ended before its first message, which must be a subscription")
        if first.WhichOneof("request") != "subscription":
            raise invalid("subscription", "the first message must be a subscription")
        sub_req = first.subscription
        if sub_req.queue_group:
            raise unimplemented("pubsub.queue")
        if sub_req.durable:
            raise unimplemented("pubsub.durable")
        self.s.check_topic("subscription.topic", sub_req.topic)
        if sub_req.HasField("ack_wait"):
            raise invalid("subscription.ack_wait", "only with durable")

        sub = _Subscription(self.s.opts["buffer_messages"], self.s.opts["buffer_bytes"])
        state = {"unsubscribed": False, "error": None}

        async def read():
            try:
                async for r in requests:
                    kind = r.WhichOneof("request")
                    if kind == "unsubscribe":
                        state["unsubscribed"] = True
                        unregister()  # stop delivery; what is buffered is still sent
                        sub.wake.set()
                        return
                    if kind == "subscription":
                        raise invalid("subscription", "allowed once, as the first message")
            except Status as e:
                state["error"] = e
                sub.wake.set()
            # A half-close without unsubscribe changes nothing.

        topic = sub_req.topic

        def unregister():
            subs = self.s.topics.get(topic)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self.s.topics[topic]

        self.s.topics[topic].add(sub)
        reader = asyncio.get_running_loop().create_task(read())
        try:
            await context.write(ps.SubscribeEvent(subscribed=ps.Subscribed()))
            while True:
                if state["error"] is not None:
                    raise state["error"]
                if sub.buf:
                    if sub.dropped:
                        n, sub.dropped = sub.dropped, 0
                        await context.write(ps.SubscribeEvent(dropped=ps.Dropped(count=n)))
                        continue
                    await context.write(ps.SubscribeEvent(message=sub.pop()))
                    continue
                if state["unsubscribed"]:
                    await context.write(ps.SubscribeEvent(unsubscribed=ps.Unsubscribed()))
                    return
                sub.wake.clear()
                await sub.wake.wait()
        finally:
            unregister()
            reader.cancel()
