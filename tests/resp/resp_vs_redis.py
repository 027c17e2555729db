#!/usr/bin/env python3
"""The RESP parser (router/resp.c, through resp_dump) against a real
redis-server: the same bytes go to both, and the commands each parsed (redis:
as MONITOR shows them) and the protocol error each gave must be the same.
Then what redis-cli really sends (recorded by a relay in front of
redis-server) parses to the arguments redis-cli was given.

usage: resp_vs_redis.py RESP_DUMP REDIS_SERVER REDIS_CLI
Exit 0 when every case agrees; prints each disagreement and exits 1.
The cases where Shale is stricter than Redis on purpose are in docs/resp.md
("Differences from redis-server") and are not sent here."""
import os
import socket
import subprocess
import sys
import tempfile
import threading

DUMP, SERVER, CLI = sys.argv[1:4]
MARK = b"*2\r\n$4\r\nECHO\r\n$13\r\nresp-diff-end\r\n"

# Every test command is EXISTS (any number of arguments, executed, so MONITOR
# shows it) or ECHO.
SAME = [
    b"EXISTS a b\r\n",
    b"EXISTS a b\n",
    b"  EXISTS  a   b \t\r\n",
    b"\r\n\n   \r\nEXISTS x\r\n",
    b"EXISTS \"a b\" 'c d'\r\n",
    b"EXISTS \"\" ''\r\n",
    b"EXISTS \"\\x41\\x4a\\n\\r\\t\\b\\a\\\\\\\"\\q\"\n",
    b"EXISTS \"\\xZZ\" \"\\x4\"\n",
    b"EXISTS 'it\\'s \\n'\n",
    b"EXISTS foo\"bar baz\"\n",
    b"EXISTS a'b c'\n",
    b"EXISTS \"a\"\tb\n",
    b"EXISTS a\rb\n",
    b"\x0b\x0cEXISTS a\x0bb\n",
    b"EXISTS \"a\rb\"\n",
    b"EXISTS \xff\xfe\n",
    b"*3\r\n$6\r\nEXISTS\r\n$0\r\n\r\n$5\r\na\x00\r\nb\r\n",
    b"*0\r\n*-1\r\n*-5\r\n*2\r\n$6\r\nEXISTS\r\n$1\r\nx\r\n",
    b"*2\r\n$6\r\nEXISTS\r\n$1\r\na\r\nEXISTS b\r\n*2\r\n$4\r\nECHO\r\n$1\r\nc\r\n",
    b"".join(b"*2\r\n$6\r\nEXISTS\r\n$%d\r\n%d\r\n" % (len(str(i)), i) for i in range(2000)),
]
ERRORS = [
    b"EXISTS \"abc\r\n",
    b"EXISTS 'abc\n",
    b"EXISTS \"a\"b\n",
    b"EXISTS 'a'b\n",
    b"EXISTS \"ab\\\n",
    b"*abc\r\n",
    b"*\r\n",
    b"*+1\r\n",
    b"*01\r\n",
    b"*-0\r\n",
    b"* 1\r\n",
    b"*99999999999999999999\r\n",
    b"*2147483648\r\n",
    b"*1\r\n$abc\r\n",
    b"*1\r\n$\r\n",
    b"*1\r\n$-1\r\n",
    b"*1\r\n$+3\r\nabc\r\n",
    b"*1\r\n$999999999999\r\n",
    b"*1\r\n$536870913\r\n",
    b"*2\r\n:1\r\n",
    b"*1\r\n*1\r\n$1\r\nx\r\n",
    b"*1\r\n%1\r\n",
    b"*2\r\n$6\r\nEXISTS\r\n$1\r\nz\r\n*1\r\nx\r\n",
    b"EXISTS ok\r\n*1\r\n$-2\r\n",
    b"a" * (64 * 1024 + 10),
    b"*" + b"1" * (64 * 1024 + 10),
    b"*1\r\n$" + b"1" * (64 * 1024 + 10),
]
# Against a redis-server with a password, not logged in (resp_dump -a).
PREAUTH = [
    b"*11\r\n",
    b"*1\r\n$16385\r\n",
    b"*x\r\n",
    b"*1\r\n$-1\r\n",
    b"*2\r\n$4\r\nPING\r\n$16384\r\n" + b"x" * 16384 + b"\r\n*11\r\n",
]


def ours(data, preauth=False):
    flags = ["-a"] if preauth else []
    out = subprocess.run([DUMP] + flags, input=data, capture_output=True, check=True).stdout
    cmds, err = [], None
    for line in out.decode().splitlines():
        if line.startswith("CMD"):
            cmds.append([b"" if a == "-" else bytes.fromhex(a) for a in line.split()[1:]])
        elif line.startswith("ERR "):
            err = line[4:]
        elif line.startswith("PENDING "):
            assert line == "PENDING 0", line
    # resp_dump byte-at-a-time must agree with one piece
    out1 = subprocess.run([DUMP, "-1"] + flags, input=data, capture_output=True, check=True).stdout
    assert out1 == out, (data[:60], out1[:200], out[:200])
    return cmds, err


def unrepr(s):
    """sdscatrepr's "..." quoting back to bytes."""
    b, i = bytearray(), 0
    esc = {"n": 10, "r": 13, "t": 9, "a": 7, "b": 8, "\\": 92, '"': 34}
    while i < len(s):
        c = s[i]
        if c == "\\":
            if s[i + 1] == "x":
                b.append(int(s[i + 2:i + 4], 16))
                i += 4
                continue
            b.append(esc[s[i + 1]])
            i += 2
            continue
        b.append(ord(c))
        i += 1
    return bytes(b)


def monitor_args(line):
    """'+ts [0 addr] "A" "B"' -> [b'A', b'B']"""
    rest = line[line.index("] ") + 2:]
    args, i = [], 0
    while i < len(rest):
        assert rest[i] == '"', rest
        j = i + 1
        while rest[j] != '"':
            j += 2 if rest[j] == "\\" else 1
        args.append(unrepr(rest[i + 1:j]))
        i = j + 2
    return args


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                return None
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l

    def until_eof(self):
        while True:
            d = self.s.recv(65536)
            if not d:
                return self.buf
            self.buf += d


def redis(port, data, expect_error, password=None):
    auth = b"AUTH %s\r\n" % password if password else b""
    mon = Conn(port)
    mon.s.sendall(auth + b"MONITOR\r\n")
    if password:
        assert mon.line() == b"+OK"
    assert mon.line() == b"+OK"
    c = Conn(port)
    err = None
    if expect_error:
        c.s.sendall(data)
        replies = c.until_eof()
        last = replies.rstrip(b"\r\n").split(b"\r\n")[-1]
        err = last[1:].decode() if last.startswith(b"-") else "(no error: %r)" % replies[-80:]
        c = Conn(port)
        c.s.sendall(auth + MARK)
    else:
        c.s.sendall(data + MARK)
    cmds = []
    while True:
        l = mon.line().decode("latin-1")
        a = monitor_args(l)
        if a == [b"ECHO", b"resp-diff-end"]:
            break
        if a[0] != b"AUTH":  # the marker connection's own
            cmds.append(a)
    mon.s.close()
    c.s.close()
    return cmds, err


def relay(port, record):
    """A relay in front of redis-server recording what the client sends."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)

    def serve():
        while True:
            try:
                cs, _ = ls.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", port))

            def pump(a, b, rec):
                while True:
                    try:
                        d = a.recv(65536)
                    except OSError:
                        d = b""
                    if not d:
                        try:
                            b.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        return
                    if rec:
                        record.append(d)
                    b.sendall(d)

            t = threading.Thread(target=pump, args=(up, cs, False), daemon=True)
            t.start()
            pump(cs, up, True)
            t.join()
            cs.close()
            up.close()

    threading.Thread(target=serve, daemon=True).start()
    return ls


def start_server(d, extra):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    srv = subprocess.Popen([SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--dir", d,
                            "--logfile", os.path.join(d, "log%d" % port)] + extra)
    cli = [CLI, "-p", str(port), "--no-auth-warning"]
    if extra:
        cli += ["-a", extra[1]]
    while subprocess.run(cli + ["PING"], capture_output=True).stdout != b"PONG\n":
        if srv.poll() is not None:
            raise SystemExit("redis-server exited")
    return srv, port


def main():
    fails = 0
    with tempfile.TemporaryDirectory() as d:
        srv, port = start_server(d, [])
        srv2, port2 = start_server(d, ["--requirepass", "pw"])
        try:
            for data in SAME + ERRORS:
                if os.environ.get("RESP_DIFF_DEBUG"):
                    print("case %r" % data[:60], flush=True)
                want = redis(port, data, data in ERRORS)
                got = ours(data)
                if want != got:
                    fails += 1
                    print("DIFFER on %r\n  redis: %.300r\n  shale: %.300r" % (data[:80], want, got))
            print("%d request streams compared with redis-server" % len(SAME + ERRORS))
            for data in PREAUTH:
                # redis executes nothing before AUTH (NOAUTH): errors only
                want = redis(port2, data, True, password=b"pw")[1]
                got = ours(data, preauth=True)[1]
                if want != got:
                    fails += 1
                    print("DIFFER before AUTH on %r\n  redis: %r\n  shale: %r" % (data[:80], want, got))
            print("%d request streams compared before AUTH" % len(PREAUTH))
            # what redis-cli sends
            for args in (["SET", "a b", "c\nd"], ["ECHO", "x" * 70000], ["-3", "PING"],
                         ["MSET", "k1", "", "k2", "\"q\""]):
                record = []
                ls = relay(port, record)
                subprocess.run([CLI, "-p", str(ls.getsockname()[1])] + args, capture_output=True, check=True)
                ls.close()
                cmds, err = ours(b"".join(record))
                want = [a.encode() for a in args if a != "-3"]
                if err is not None or cmds[-1] != want:
                    fails += 1
                    print("redis-cli %r: parsed %r err %r" % (args, [c[:3] for c in cmds], err))
                if args[0] == "-3" and cmds[0][:2] != [b"HELLO", b"3"]:
                    fails += 1
                    print("redis-cli -3 did not start with HELLO 3: %r" % cmds)
            print("4 redis-cli invocations recorded and parsed")
        finally:
            for p in (srv, srv2):
                p.terminate()
                p.wait()
    return 1 if fails else 0


sys.exit(main())
