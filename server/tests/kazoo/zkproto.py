"""ZooKeeper 3.9 requests that kazoo 2.11 has no API for, as kazoo request records.

kazoo's connection serializes any request object with `type` and `serialize()` and hands the
reply body to `deserialize(bytes, offset)`, so these go through `call(client, Request(...))`
on a normal kazoo session. `RawSession` is a bare-socket client for the handshake checks and
for abandoning a session without closing it (so the server must expire it).
"""

import socket
import struct
import threading
import time
from collections import namedtuple

from kazoo.exceptions import EXCEPTIONS
from kazoo.protocol.serialization import (
    int_struct,
    read_buffer,
    read_string,
    stat_struct,
    write_buffer,
    write_string,
)
from kazoo.protocol.states import ZnodeStat
from kazoo.security import OPEN_ACL_UNSAFE

# CreateMode flags (org.apache.zookeeper.CreateMode)
PERSISTENT = 0
EPHEMERAL = 1
PERSISTENT_SEQUENTIAL = 2
EPHEMERAL_SEQUENTIAL = 3
CONTAINER = 4
PERSISTENT_WITH_TTL = 5
PERSISTENT_SEQUENTIAL_WITH_TTL = 6

# AddWatchMode
ADD_WATCH_PERSISTENT = 0
ADD_WATCH_PERSISTENT_RECURSIVE = 1

# WatcherType for checkWatches/removeWatches
WATCHER_CHILDREN = 1
WATCHER_DATA = 2
WATCHER_ANY = 3

# Event types
EV_CREATED = 1
EV_DELETED = 2
EV_CHANGED = 3
EV_CHILD = 4


def _acl_bytes(acl):
    b = bytearray(int_struct.pack(len(acl)))
    for a in acl:
        b.extend(int_struct.pack(a.perms) + write_string(a.id.scheme) + write_string(a.id.id))
    return b


def _read_vector(buf, offset, read_one):
    """A jute vector: its length, then `read_one(buf, offset) -> (item, offset)` that often;
    returns the items and the offset after them."""
    n = int_struct.unpack_from(buf, offset)[0]
    offset += 4
    out = []
    for _ in range(max(n, 0)):
        item, offset = read_one(buf, offset)
        out.append(item)
    return out, offset


def _read_client_info(buf, offset):
    scheme, offset = read_string(buf, offset)
    user, offset = read_string(buf, offset)
    return (scheme, user), offset


def _read_stat(buf, offset):
    return ZnodeStat._make(stat_struct.unpack_from(buf, offset)), offset + stat_struct.size


class _Request:
    """kazoo skips the result of a request that is falsy (an empty namedtuple is): make every
    request truthy."""

    def __bool__(self):
        return True


class _Create(_Request):
    """The create family: a CreateRequest body (with the flags given) answered by path + Stat."""

    def create_body(self, flags):
        return write_string(self.path) + write_buffer(self.data) + _acl_bytes(self.acl) + int_struct.pack(flags)

    @classmethod
    def deserialize(cls, buf, offset):
        path, offset = read_string(buf, offset)
        stat, _ = _read_stat(buf, offset)
        return path, stat


class CreateContainer(_Create, namedtuple("CreateContainer", "path data acl")):
    type = 19

    def serialize(self):
        return self.create_body(CONTAINER)


class CreateTTL(_Create, namedtuple("CreateTTL", "path data acl flags ttl")):
    type = 21

    def serialize(self):
        return self.create_body(self.flags) + struct.pack("!q", self.ttl)


class Create2Flags(_Create, namedtuple("Create2Flags", "path data acl flags")):
    """create2 with a raw flags value (kazoo only sends 0..3)."""

    type = 15

    def serialize(self):
        return self.create_body(self.flags)


class _PathAndInt(_Request):
    """A request of a path and one int (a mode or a watcher type), answered with no body."""

    def serialize(self):
        return write_string(self[0]) + int_struct.pack(self[1])

    @classmethod
    def deserialize(cls, buf, offset):
        return True


class AddWatch(_PathAndInt, namedtuple("AddWatch", "path mode")):
    type = 106


class CheckWatches(_PathAndInt, namedtuple("CheckWatches", "path watcher_type")):
    type = 17


class RemoveWatches(_PathAndInt, namedtuple("RemoveWatches", "path watcher_type")):
    type = 18


class GetAllChildrenNumber(_Request, namedtuple("GetAllChildrenNumber", "path")):
    type = 104

    def serialize(self):
        return write_string(self.path)

    @classmethod
    def deserialize(cls, buf, offset):
        return int_struct.unpack_from(buf, offset)[0]


class GetEphemerals(_Request, namedtuple("GetEphemerals", "prefix")):
    type = 103

    def serialize(self):
        return write_string(self.prefix)

    @classmethod
    def deserialize(cls, buf, offset):
        return _read_vector(buf, offset, read_string)[0]


class WhoAmI(_Request, namedtuple("WhoAmI", "")):
    type = 107

    def serialize(self):
        return b""

    @classmethod
    def deserialize(cls, buf, offset):
        return _read_vector(buf, offset, _read_client_info)[0]


class Unknown(_Request, namedtuple("Unknown", "")):
    """An opcode ZooKeeper does not define."""

    type = 77

    def serialize(self):
        return b""

    @classmethod
    def deserialize(cls, buf, offset):
        return True


class MultiRead(_Request, namedtuple("MultiRead", "ops")):
    """ops: list of ("get_data", path) / ("get_children", path). Result per op:
    ("data", bytes, ZnodeStat) / ("children", [names]) / ("error", KazooException)."""

    type = 22
    OP = {"get_data": 4, "get_children": 8}

    def serialize(self):
        b = bytearray()
        for kind, path in self.ops:
            b.extend(struct.pack("!iBi", self.OP[kind], 0, -1))
            b.extend(write_string(path) + b"\x00")  # path, watch=false
        b.extend(struct.pack("!iBi", -1, 1, -1))
        return bytes(b)

    @classmethod
    def deserialize(cls, buf, offset):
        results = []
        while True:
            typ, done, err = struct.unpack_from("!iBi", buf, offset)
            offset += 9
            if done:
                return results
            if typ == 4:
                data, offset = read_buffer(buf, offset)
                stat, offset = _read_stat(buf, offset)
                results.append(("data", data, stat))
            elif typ == 8:
                names, offset = _read_vector(buf, offset, read_string)
                results.append(("children", names))
            elif typ == -1:
                code = int_struct.unpack_from(buf, offset)[0]
                offset += 4
                results.append(("error", EXCEPTIONS[code]()))
            else:
                raise ValueError(f"unexpected multiRead result type {typ}")


def call(client, request, timeout=10.0):
    """Sends one custom request on a kazoo session and waits (bounded) for its result."""
    async_result = client.handler.async_result()
    client._call(request, async_result)
    return async_result.get(timeout=timeout)


class EventTap:
    """Records every watch event a kazoo client receives (kazoo drops events for paths it has
    no one-shot watcher on, e.g. those of persistent watches)."""

    def __init__(self, client):
        self.events = []
        self.cond = threading.Condition()
        conn = client._connection
        original = conn._read_watch_event
        from kazoo.protocol.serialization import Watch

        def tap(buffer, offset):
            watch, _ = Watch.deserialize(buffer, offset)
            with self.cond:
                self.events.append((watch.type, watch.path))
                self.cond.notify_all()
            return original(buffer, offset)

        conn._read_watch_event = tap

    def wait_for(self, n, timeout=10.0):
        """Waits until at least n events arrived; returns them."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.events) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {n} watch events within {timeout}s, got {self.events}"
                    )
                self.cond.wait(left)
            return list(self.events)

    def snapshot(self):
        with self.cond:
            return list(self.events)


# -- bare-socket session -------------------------------------------------------------------------


class RawSession:
    """A minimal synchronous ZooKeeper client over one TCP connection. Watch events that
    arrive while it waits for a reply are kept in `events` as (type, state, path)."""

    SET_WATCHES_XID = -8

    def __init__(self, host, port, timeout_ms=4000, session_id=0, passwd=b"\0" * 16,
                 last_zxid=0, read_only=None, io_timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=io_timeout)
        self.xid = 0
        self.events = []
        self.last_zxid = last_zxid
        body = struct.pack("!iqiq", 0, last_zxid, timeout_ms, session_id) + write_buffer(passwd)
        if read_only is not None:
            body += bytes([1 if read_only else 0])
        self.request_len = len(body)
        self._send(body)
        reply = self._recv_frame()
        self.connect_reply_len = len(reply)
        (self.protocol_version, self.timeout_ms, self.session_id) = struct.unpack_from("!iiq", reply, 0)
        self.passwd, off = read_buffer(reply, 16)
        self.read_only = bool(reply[off]) if len(reply) > off else None

    def _send(self, body):
        self.sock.sendall(struct.pack("!i", len(body)) + body)

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        return buf

    def _recv_frame(self):
        (n,) = struct.unpack("!i", self._recv_exact(4))
        return self._recv_exact(n)

    def _read_until_xid(self, xid):
        while True:
            frame = self._recv_frame()
            rxid, zxid, err = struct.unpack_from("!iqi", frame, 0)
            if zxid > 0 and rxid != -1:
                self.last_zxid = max(self.last_zxid, zxid)
            if rxid == -1:
                typ, state = struct.unpack_from("!ii", frame, 16)
                path, _ = read_string(frame, 24)
                self.events.append((typ, state, path))
                continue
            if rxid == xid:
                return err, frame[16:]

    def request(self, opcode, body):
        """Sends a request; returns (err, reply body). Keeps watch events, skips pings."""
        self.xid += 1
        self._send(struct.pack("!ii", self.xid, opcode) + body)
        return self._read_until_xid(self.xid)

    def create(self, path, data=b"", flags=PERSISTENT, acl=OPEN_ACL_UNSAFE):
        body = write_string(path) + write_buffer(data) + _acl_bytes(acl) + int_struct.pack(flags)
        err, reply = self.request(1, body)
        if err:
            raise EXCEPTIONS[err]()
        return read_string(reply, 0)[0]

    def get_data(self, path, watch=False):
        err, reply = self.request(4, write_string(path) + bytes([1 if watch else 0]))
        if err:
            raise EXCEPTIONS[err]()
        data, off = read_buffer(reply, 0)
        return data, _read_stat(reply, off)[0]

    def exists(self, path, watch=False):
        err, reply = self.request(3, write_string(path) + bytes([1 if watch else 0]))
        if err == -101:
            return None
        if err:
            raise EXCEPTIONS[err]()
        return _read_stat(reply, 0)[0]

    def get_children(self, path, watch=False):
        err, reply = self.request(8, write_string(path) + bytes([1 if watch else 0]))
        if err:
            raise EXCEPTIONS[err]()
        n = int_struct.unpack_from(reply, 0)[0]
        off, out = 4, []
        for _ in range(n):
            name, off = read_string(reply, off)
            out.append(name)
        return out

    def add_watch(self, path, mode):
        err, _ = self.request(106, write_string(path) + int_struct.pack(mode))
        if err:
            raise EXCEPTIONS[err]()

    def set_watches(self, relative_zxid, data=(), exist=(), child=(), persistent=None, recursive=None):
        """setWatches (101), or setWatches2 (105) when persistent/recursive lists are given."""

        def strings(xs):
            return int_struct.pack(len(xs)) + b"".join(write_string(x) for x in xs)

        body = struct.pack("!q", relative_zxid) + strings(data) + strings(exist) + strings(child)
        opcode = 101
        if persistent is not None or recursive is not None:
            body += strings(persistent or ()) + strings(recursive or ())
            opcode = 105
        self._send(struct.pack("!ii", self.SET_WATCHES_XID, opcode) + body)
        err, _ = self._read_until_xid(self.SET_WATCHES_XID)
        if err:
            raise EXCEPTIONS[err]()

    def wait_events(self, n, timeout=10.0):
        """Reads until at least n watch events have arrived (pinging to keep the session)."""
        deadline = time.monotonic() + timeout
        while len(self.events) < n:
            if time.monotonic() >= deadline:
                raise AssertionError(f"expected {n} watch events within {timeout}s, got {self.events}")
            self.ping()
            if len(self.events) < n:
                time.sleep(0.02)
        return list(self.events)

    def ping(self):
        self._send(struct.pack("!ii", -2, 11))
        self._read_until_xid(-2)

    def close_session(self):
        err, _ = self.request(-11, b"")
        self.sock.close()
        return err

    def abandon(self):
        """Drops the TCP connection without closeSession: the session must expire."""
        self.sock.close()
