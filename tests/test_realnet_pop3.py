"""The POP3 server over Maildirs, driven by the stdlib's poplib and by raw transcripts."""

from __future__ import annotations

import os
import poplib
import socket
import threading

import pytest

from mailgate.realnet.services import maildir
from mailgate.realnet.services.inthread import serve_in_thread
from mailgate.realnet.services.passwords import hash_password, verify_password
from mailgate.realnet.services.pop3 import Pop3Server
from mailgate.realnet.services.pop3_session import MAX_AUTH_FAILURES, dot_stuff
from mailgate.sim.scenario.loading import load
from tests.conftest import TESTBED

pytestmark = pytest.mark.realnet

HOST = "127.0.0.1"
# Cheap hashes keep logins fast; the scenario's real-cost hash is tested once.
USERS = {"alice": hash_password("wonderland", n=1024), "bob": hash_password("builder", n=1024)}


def sample(n: int) -> bytes:
    return (
        f"From: sender{n}@bigmail.example\r\nTo: alice@drive-network.example\r\n"
        f"Subject: message {n}\r\nMessage-ID: <{n}@bigmail.example>\r\n\r\n"
        f"Line one of {n}.\r\n.starts with a dot\r\n..two dots\r\n.\r\nlast line\r\n"
    ).encode()


@pytest.fixture
def events():
    return []


@pytest.fixture
def server(tmp_path, events):
    for n in (1, 2, 3):
        maildir.deliver(tmp_path, "alice", sample(n))
    pop = Pop3Server(tmp_path, USERS, HOST, 0, on_event=lambda *e: events.append(e))
    with serve_in_thread(pop):
        yield pop


def login(server: Pop3Server, user: str = "alice", password: str = "wonderland") -> poplib.POP3:
    client = poplib.POP3(HOST, server.port, timeout=5)
    try:
        client.user(user)
        client.pass_(password)
    except BaseException:
        client.close()
        raise
    return client


class Raw:
    """A hand-driven POP3 connection for transcripts poplib will not produce."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.file = self.sock.makefile("rb")
        assert self.line().startswith("+OK")

    def line(self) -> str:
        return self.file.readline().decode().rstrip("\r\n")

    def send(self, command: str | bytes) -> str:
        data = command if isinstance(command, bytes) else command.encode()
        self.sock.sendall(data + b"\r\n")
        return self.line()

    def multiline(self) -> list[str]:
        out = []
        while (line := self.line()) != ".":
            out.append(line)
        return out

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def raw(server):
    conns: list[Raw] = []

    def open_raw() -> Raw:
        conns.append(Raw(server.port))
        return conns[-1]

    yield open_raw
    for c in conns:
        c.close()


def test_session_stat_list_uidl_retr_top(server, tmp_path, events):
    on_disk = maildir.list_messages(tmp_path, "alice")
    client = login(server)
    try:
        assert client.stat() == (3, sum(m.size for m in on_disk))
        _, listing, _ = client.list()
        assert [line.decode() for line in listing] == [
            f"{n} {m.size}" for n, m in enumerate(on_disk, 1)
        ]
        _, uidl, _ = client.uidl()
        uids = [line.decode().split()[1] for line in uidl]
        assert uids == [m.uid for m in on_disk] and len(set(uids)) == 3
        for n in (1, 2, 3):
            _, lines, octets = client.retr(n)
            # poplib removes the dot-stuffing: the round trip gives back the exact message.
            assert b"\r\n".join(lines) + b"\r\n" == sample(n)
            assert octets >= len(sample(n))
        _, top, _ = client.top(2, 1)
        assert top[-2:] == [b"", b"Line one of 2."]
        _, top0, _ = client.top(2, 0)
        assert top0[-1] == b"" and b"Subject: message 2" in top0
        assert client.noop().startswith(b"+OK")
    finally:
        client.quit()
    assert [e[0] for e in events] == ["login", "retrieve", "retrieve", "retrieve"]
    assert all(e[3] <= e[4] for e in events)


def test_uidl_is_stable_across_sessions(server):
    first = login(server)
    uids = first.uidl()[1]
    first.quit()
    again = login(server)
    assert again.uidl()[1] == uids
    again.quit()


def test_dele_then_quit_deletes(server, tmp_path):
    client = login(server)
    client.dele(2)
    with pytest.raises(poplib.error_proto, match="already deleted"):
        client.retr(2)
    assert client.stat()[0] == 2
    assert [line.split()[0] for line in client.list()[1]] == [b"1", b"3"]
    client.quit()
    remaining = maildir.list_messages(tmp_path, "alice")
    assert len(remaining) == 2
    assert all(b"message 2" not in m.path.read_bytes() for m in remaining)


def test_dele_then_drop_deletes_nothing(server, tmp_path):
    client = login(server)
    client.dele(1)
    client.dele(3)
    client.close()  # hang up without QUIT: no UPDATE state
    # The server releases the lock when it sees the hang-up; poll until login works again.
    for _ in range(50):
        try:
            again = login(server)
            break
        except poplib.error_proto as e:
            assert b"IN-USE" in e.args[0]
            threading.Event().wait(0.05)
    assert again.stat()[0] == 3
    again.quit()
    assert len(maildir.list_messages(tmp_path, "alice")) == 3


def test_rset_unmarks(server, tmp_path):
    client = login(server)
    client.dele(1)
    client.dele(2)
    assert client.stat()[0] == 1
    assert client.rset().startswith(b"+OK")
    assert client.stat()[0] == 3
    client.quit()
    assert len(maildir.list_messages(tmp_path, "alice")) == 3


def test_bad_password_and_unknown_user_look_the_same(server, raw):
    for user in ("alice", "mallory"):
        client = poplib.POP3(HOST, server.port, timeout=5)
        assert client.user(user).startswith(b"+OK")
        with pytest.raises(poplib.error_proto) as failure:
            client.pass_("wrong")
        assert failure.value.args[0] == b"-ERR [AUTH] invalid user name or password"
        client.quit()
    conn = raw()
    for _ in range(MAX_AUTH_FAILURES):
        assert conn.send("USER alice") == "+OK send PASS"
        assert conn.send("PASS nope").startswith("-ERR [AUTH]")
    assert conn.line() == ""  # too many failures: the server hung up


def test_one_session_per_maildrop(server):
    first = login(server)
    with pytest.raises(poplib.error_proto, match="IN-USE"):
        login(server)
    other_user = login(server, "bob", "builder")  # bob's maildrop is his own (and empty)
    assert other_user.stat() == (0, 0)
    other_user.quit()
    first.quit()
    second = login(server)
    assert second.stat()[0] == 3
    second.quit()


def test_errors_for_bad_commands_arguments_and_states(server, raw):
    conn = raw()
    capa = conn.send("CAPA")
    assert capa.startswith("+OK")
    assert {"USER", "TOP", "UIDL"} <= set(conn.multiline())
    for command in ("STAT", "RETR 1", "DELE 1", "NOOP", "PASS x", "FOO"):
        assert conn.send(command).startswith("-ERR"), command
    assert conn.send("USER").startswith("-ERR")
    assert conn.send("user alice").startswith("+OK")  # keywords are case-insensitive
    assert conn.send("pass wonderland").startswith("+OK alice has 3 messages")
    for command in (
        "RETR",
        "RETR x",
        "RETR 0",
        "RETR 4",
        "RETR 99999999999999",
        "LIST 1 2",
        "TOP 1",
        "TOP 1 -1",
        "STAT 1",
        "RSET now",
        "USER bob",
        "XYZZY",
    ):
        assert conn.send(command).startswith("-ERR"), command
    assert conn.send("LIST 2").startswith("+OK 2 ")
    assert conn.send("UIDL 3").startswith("+OK 3 ")
    # RFC 2449: at most 255 octets per command; the session survives a longer one...
    assert conn.send("NOOP " + "x" * 300) == "-ERR line too long"
    assert conn.send("NOOP") == "+OK"
    # ...but a line beyond any reason ends it.
    assert conn.send(b"NOOP " + b"x" * 10_000) == "-ERR line too long"
    assert conn.line() == ""


def test_pipelined_commands_are_answered_in_order(server, raw):
    conn = raw()
    conn.sock.sendall(b"USER alice\r\nPASS wonderland\r\nSTAT\r\nNOOP\r\nQUIT\r\n")
    replies = [conn.line() for _ in range(5)]
    assert [r.split()[0] for r in replies] == ["+OK"] * 5
    assert replies[2].startswith("+OK 3 ")


def test_dot_stuffing_wire_format(server, raw):
    conn = raw()
    conn.send("USER alice")
    conn.send("PASS wonderland")
    assert conn.send("RETR 1").startswith("+OK")
    body = conn.multiline()
    assert "..starts with a dot" in body and "...two dots" in body and ".." in body
    assert dot_stuff(b".a\r\nb\r\n.") == b"..a\r\nb\r\n..\r\n.\r\n"


def test_scenario_users_and_hash(tmp_path):
    scenario = load(TESTBED)
    (user,) = scenario.realnet.users
    assert verify_password("selftest", user.password_hash)
    assert not verify_password("selftest", "not-a-hash")
    maildir.deliver(tmp_path, user.name, sample(1))
    with serve_in_thread(Pop3Server(tmp_path, scenario.realnet.users, HOST, 0)) as pop:
        client = login(pop, "selftest", "selftest")
        assert client.stat()[0] == 1
        client.quit()


def test_stop_ends_sessions_without_deleting(tmp_path):
    maildir.deliver(tmp_path, "alice", sample(1))
    pop = Pop3Server(tmp_path, USERS, HOST, 0)
    with serve_in_thread(pop):
        client = login(pop)
        client.dele(1)
    # The server is gone: the session ended without UPDATE.
    with pytest.raises((poplib.error_proto, OSError, EOFError)):
        client.quit()
    client.close()
    assert len(maildir.list_messages(tmp_path, "alice")) == 1


# ---------------------------------------------------------------- Maildir


def test_maildir_delivery_is_atomic_and_ordered(tmp_path):
    paths = [
        maildir.deliver(tmp_path, "carol", f"Subject: {n}\n\nbody\n".encode()) for n in range(5)
    ]
    base = tmp_path / "carol"
    assert sorted(os.listdir(base)) == ["cur", "new", "tmp"]
    assert os.listdir(base / "tmp") == []
    assert all(p.parent == base / "new" for p in paths)
    listed = maildir.list_messages(tmp_path, "carol")
    assert [m.path for m in listed] == paths  # delivery order
    # Stored with CRLF so that the file size is the POP3 octet count.
    assert paths[0].read_bytes() == b"Subject: 0\r\n\r\nbody\r\n"
    assert listed[0].size == len(b"Subject: 0\r\n\r\nbody\r\n")
    # Messages a client moved to cur/ (with an info suffix) are listed too, same UID.
    moved = base / "cur" / (paths[1].name + ":2,S")
    paths[1].rename(moved)
    again = maildir.list_messages(tmp_path, "carol")
    assert [m.uid for m in again] == [m.uid for m in listed]
    assert maildir.delete([paths[0], moved, paths[0]]) == []
    assert len(maildir.list_messages(tmp_path, "carol")) == 3
    assert maildir.list_messages(tmp_path, "nobody") == []


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "", "x" * 100])
def test_maildir_rejects_unsafe_names(tmp_path, name):
    with pytest.raises(ValueError):
        maildir.deliver(tmp_path, name, b"x")


def test_idle_session_is_logged_out_without_update(tmp_path):
    maildir.deliver(tmp_path, "alice", sample(1))
    with serve_in_thread(Pop3Server(tmp_path, USERS, HOST, 0, idle_timeout_s=0.3)) as pop:
        conn = Raw(pop.port)
        try:
            conn.send("USER alice")
            conn.send("PASS wonderland")
            assert conn.send("DELE 1").startswith("+OK")
            assert conn.line().startswith("-ERR autologout")
            assert conn.line() == ""
        finally:
            conn.close()
    assert len(maildir.list_messages(tmp_path, "alice")) == 1


def test_maildir_group_delivery(tmp_path):
    items = [("alice", sample(1)), ("bob", sample(2)), ("alice", sample(3))]
    paths = maildir.deliver_many(tmp_path, items)
    assert [p.parent.parent.name for p in paths] == ["alice", "bob", "alice"]
    assert [p.read_bytes() for p in paths] == [m for _, m in items]
    assert len(maildir.list_messages(tmp_path, "alice")) == 2
    assert not os.listdir(tmp_path / "alice" / "tmp")
    with pytest.raises(ValueError):  # a bad name mid-batch: the complete ones stay
        maildir.deliver_many(tmp_path, [("carol", sample(4)), ("../x", sample(5))])
    assert len(maildir.list_messages(tmp_path, "carol")) == 1
