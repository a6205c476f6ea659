"""Unit tests of memstore.py's pure parts; run by `go test ./backends/python-memstore/`
(or /usr/bin/python3 -m unittest discover -s backends/python-memstore)."""

import asyncio
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import prismkit  # noqa: E402,F401  (puts gen/ on sys.path)
import memstore  # noqa: E402
from prismkit import ConfigError, Status  # noqa: E402


class ParseDuration(unittest.TestCase):
    def test_go_durations(self):
        for s, want in [("1s", 1.0), ("500ms", 0.5), ("1m30s", 90.0), ("1h", 3600.0), (".5s", 0.5), ("0", 0.0),
                        ("1.5us", 1.5e-6)]:
            self.assertAlmostEqual(memstore.parse_duration(s), want, msg=s)

    def test_not_durations(self):
        for s in ["", "1", "s", "1x", "1s\n", "-1s", "1 s", "."]:
            self.assertIsNone(memstore.parse_duration(s), msg=repr(s))


class Config(unittest.TestCase):
    def init(self, cfg):
        asyncio.run(memstore.MemStore().initialize(cfg, {}, ""))

    def test_bad_fields_are_named(self):
        for cfg, field in [({"max_keys": -1.0}, "max_keys"), ({"max_keyz": 10.0}, "max_keyz"),
                           ({"sweep_interval": 5.0}, "sweep_interval"), ({"max_keys": 1.5}, "max_keys"),
                           ({"buffer_bytes": True}, "buffer_bytes"), ({"sweep_interval": "-1s"}, "sweep_interval")]:
            with self.assertRaises(ConfigError, msg=cfg) as e:
                self.init(cfg)
            self.assertEqual(e.exception.field, field)
            self.assertIn('"%s"' % field, e.exception.message)

    def test_good_config(self):
        self.init({"max_keys": 10.0, "sweep_interval": "10ms", "buffer_messages": 4.0})


class Cursor(unittest.TestCase):
    def test_round_trip(self):
        c = memstore._encode_cursor("p/", "p/é\x00x")
        self.assertEqual(memstore._decode_cursor(c, "p/"), "p/é\x00x")

    def test_foreign_cursors_name_the_field(self):
        good = memstore._encode_cursor("p/", "p/1")
        for c, prefix in [("garbage", "p/"), ("", "p/"), (good, "q/"), (memstore._encode_cursor("p/", "q"), "p/")]:
            with self.assertRaises(Status, msg=c) as e:
                memstore._decode_cursor(c, prefix)
            self.assertTrue(e.exception.message.startswith("cursor:"), e.exception.message)


class Metadata(unittest.TestCase):
    def check(self, md):
        memstore.MemStore().check_message("", "t", b"", md)

    def test_keys(self):
        self.check({"a.b-c_D9": "v"})
        for k in ["", "a\n", "a b", "é", "x" * 129]:
            with self.assertRaises(Status, msg=repr(k)) as e:
                self.check({k: "v"})
            self.assertTrue(e.exception.message.startswith("metadata:"))

    def test_sizes(self):
        with self.assertRaises(Status):
            self.check({"k%d" % i: "" for i in range(65)})
        with self.assertRaises(Status):
            self.check({"k": "x" * (8 << 10)})


class DropOldest(unittest.TestCase):
    def test_bounded_by_messages_and_bytes_keeping_the_newest(self):
        async def run():
            s = memstore._Subscription(3, 100)
            for i in range(10):
                s.push(i, 10)
            self.assertEqual((list(m for m, _ in s.buf), s.dropped), ([7, 8, 9], 7))
            s = memstore._Subscription(100, 25)
            for i in range(5):
                s.push(i, 10)
            self.assertEqual((list(m for m, _ in s.buf), s.dropped), ([3, 4], 3))
            s.push("big", 1000)  # one message larger than the buffer is still kept, alone
            self.assertEqual(list(m for m, _ in s.buf), ["big"])
        asyncio.run(run())


if __name__ == "__main__":
    unittest.main()
