//! A Python gRPC client (Debian's python3-grpcio, stubs generated from
//! control/proto at test time with python3-grpc-tools) against the daemon:
//! the API works for clients that are not this crate.
//!
//! Missing Python modules fail the test with what to install, unless
//! SLUICE_SKIP_PYTHON=1.

mod common;

use common::{tempdir, Daemon};
use std::path::Path;
use std::process::Command;

const PYTHON: &str = "/usr/bin/python3";

#[test]
fn a_python_grpc_client_generated_from_the_same_protos() {
    if std::env::var("SLUICE_SKIP_PYTHON").as_deref() == Ok("1") {
        eprintln!("SLUICE_SKIP_PYTHON=1: the Python gRPC client test is skipped");
        return;
    }
    let have = Command::new(PYTHON)
        .args(["-c", "import grpc, grpc_tools.protoc"])
        .output();
    match have {
        Ok(o) if o.status.success() => {}
        other => panic!(
            "{PYTHON} lacks the gRPC modules ({}): run scripts/test, which installs \
             python3-grpcio and python3-grpc-tools, or apt-get install them; \
             SLUICE_SKIP_PYTHON=1 skips this test",
            match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) => e.to_string(),
            }
        ),
    }

    let dir = tempdir("python");
    let sock = dir.join("api.sock");
    let config = dir.join("sluiced.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[api]\nlisten = [\"unix:{}\"]\n\
             [[port]]\nname = \"p0\"\nbackend = \"mem:p0\"\n\
             [[port]]\nname = \"p1\"\nbackend = \"mem:p1\"\n",
            dir.join("state").display(),
            sock.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&config);

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(PYTHON)
        .arg(root.join("../scripts/grpc-client-test.py"))
        .arg("--api")
        .arg(format!("unix:{}", sock.display()))
        .arg("--proto-dir")
        .arg(root.join("proto"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client failed:\n{stdout}\n{stderr}\ndaemon log:\n{}",
        daemon.log().join("\n")
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
    eprintln!("{}", stdout.trim());
    assert!(daemon.terminate().success());
    std::fs::remove_dir_all(&dir).ok();
}
