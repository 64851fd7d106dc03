//! Routing of redirected connections by their original destination (SO_ORIGINAL_DST), the way the
//! mesh's init container redirects an application's traffic: a real iptables REDIRECT rule, in a
//! private network namespace so nothing outside the test is touched (needs root, `unshare`,
//! `setpriv` and `iptables`; Debian: `apt-get install -y iptables`).
//!
//! Inside the namespace: a "service" at 127.0.0.55:8080 (a virtual address, like a ClusterIP) whose
//! endpoint is an HTTP server on 127.0.0.56:8080; an HTTP server and a TCP echo server on
//! 127.0.0.57 that no service names, and two server-speaks-first servers there (on 3306, an opaque
//! port by default, and 3307); iptables sends every TCP connection except the proxy's own (uid
//! 2102, as in the mesh) to the proxy's outbound port.

use std::process::Command;

const SCRIPT: &str = r#"
set -eu
proxy=$1 dir=$2
# Everything started here lives in this namespace only; stop it all on the way out.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
ip link set lo up
wait_for() {
    python3 - "$@" <<'PY'
import socket, sys, time
deadline = time.time() + 20
for addr in sys.argv[1:]:
    host, port = addr.rsplit(":", 1)
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close(); break
        except OSError:
            if time.time() > deadline: raise
            time.sleep(0.05)
PY
}
mkdir -p "$dir/svc" "$dir/other"
echo service-endpoint >"$dir/svc/who"
echo passthrough >"$dir/other/who"
python3 -m http.server 8080 --bind 127.0.0.56 --directory "$dir/svc" >/dev/null 2>&1 &
python3 -m http.server 8080 --bind 127.0.0.57 --directory "$dir/other" >/dev/null 2>&1 &
python3 - >/dev/null 2>&1 <<'PY' &
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.57", 9000)); s.listen()
while True:
    c, _ = s.accept()
    try:
        c.sendall(c.recv(100))
    except OSError:
        pass
    c.close()
PY
# Server-speaks-first (MySQL-like): greets on accept, before the client sends a byte. 3306 is
# opaque by default; 3307 is not, so the proxy waits there for a first byte to detect.
for port in 3306 3307; do
python3 - "$port" >/dev/null 2>&1 <<'PY' &
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.57", int(sys.argv[1]))); s.listen()
while True:
    c, _ = s.accept()
    try:
        c.sendall(b"greeting\n"); c.recv(100)
    except OSError:
        pass  # a readiness probe that closed at once
    c.close()
PY
done
# The servers must be up before the redirect exists: afterwards a probe would reach the proxy.
wait_for 127.0.0.56:8080 127.0.0.57:8080 127.0.0.57:9000 127.0.0.57:3306 127.0.0.57:3307
iptables -t nat -A OUTPUT -p tcp -m owner --uid-owner 2102 -j RETURN
iptables -t nat -A OUTPUT -p tcp -d 127.0.0.55 -j REDIRECT --to-ports 4140
iptables -t nat -A OUTPUT -p tcp -d 127.0.0.57 -j REDIRECT --to-ports 4140
cat >"$dir/config.json" <<JSON
{"services":[{"name":"svc","authorities":["svc.test:8080","127.0.0.55:8080"],
  "endpoints":[{"addr":"127.0.0.56:8080","labels":{"pod":"svc-0"}}]}]}
JSON
chmod -R a+rX "$dir"
setpriv --reuid 2102 --regid 2102 --clear-groups "$proxy" --config "$dir/config.json" \
    --outbound 127.0.0.1:4140 --inbound off --admin 127.0.0.1:4191 --detect-timeout 30s --shutdown-grace 0s \
    >/dev/null 2>"$dir/proxy.log" &
wait_for 127.0.0.1:4140 127.0.0.1:4191
python3 - <<'PY'
import socket, urllib.request
def get(url):
    # A Host no service claims: only the original destination can route these.
    req = urllib.request.Request(url, headers={"Host": "elsewhere.test"})
    return urllib.request.urlopen(req, timeout=5).read().decode().strip()
print("service:", get("http://127.0.0.55:8080/who"))
print("passthrough:", get("http://127.0.0.57:8080/who"))
s = socket.create_connection(("127.0.0.57", 9000), timeout=5)
s.sendall(b"\x00raw bytes\n"); print("opaque:", s.recv(100)); s.close()
# The greeting must arrive long before the 30 s detection timeout could end.
s = socket.create_connection(("127.0.0.57", 3306), timeout=5)
print("opaque port:", s.recv(100)); s.close()
s = socket.create_connection(("127.0.0.57", 3307), timeout=1)
try:
    print("detected port:", s.recv(100))
except socket.timeout:
    print("detected port: still waiting for the client")
s.close()
m = urllib.request.urlopen("http://127.0.0.1:4191/metrics", timeout=5).read().decode()
print("metrics:", [l for l in m.splitlines() if l.startswith("request_total{")])
PY
echo "log:"; cat "$dir/proxy.log"
"#;

#[test]
fn redirected_connections_route_by_original_destination() {
    let dir = std::env::temp_dir().join(format!("weft-proxy-origdst-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = Command::new("unshare")
        .args(["--net", "--kill-child", "bash", "-c", SCRIPT, "script"])
        .arg(env!("CARGO_BIN_EXE_weft-proxy"))
        .arg(&dir)
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the namespace script failed (needs root and iptables: apt-get install -y iptables)\n\
         stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("service: service-endpoint"), "{stdout}");
    assert!(stdout.contains("passthrough: passthrough"), "{stdout}");
    assert!(stdout.contains(r"opaque: b'\x00raw bytes\n'"), "{stdout}");
    // A server-speaks-first protocol on a default opaque port is not held for detection; on
    // another port it is (the control: the flag is what makes the difference).
    assert!(stdout.contains(r"opaque port: b'greeting\n'"), "{stdout}");
    assert!(
        stdout.contains("detected port: still waiting for the client"),
        "{stdout}"
    );
    // The service's requests are counted against its endpoint.
    assert!(
        stdout.contains(r#"dst_service=\"svc\""#) || stdout.contains(r#"dst_service="svc""#),
        "{stdout}"
    );
    eprintln!("{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
