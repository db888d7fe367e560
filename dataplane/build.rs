//! With the `dpdk` feature: finds the system's DPDK with pkg-config and
//! compiles the C shim over its inline functions (src/io/dpdk/shim.c).
//! Without it: nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "dpdk")]
    dpdk::build();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    pub fn build() {
        println!("cargo:rerun-if-changed=src/io/dpdk/shim.c");
        println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
        // Probe without emitting link flags: the shim has to come before the
        // DPDK libraries on the link line (they are linked `--as-needed`),
        // so they are emitted after it.
        let lib = pkg_config::Config::new()
            .atleast_version("22.11")
            .cargo_metadata(false)
            .probe("libdpdk")
            .unwrap_or_else(|e| {
                panic!(
                    "the dpdk feature needs DPDK 22.11 or newer and pkg-config \
                     (Debian: apt-get install libdpdk-dev pkg-config): {e}"
                )
            });
        let mut cc = cc::Build::new();
        cc.file("src/io/dpdk/shim.c")
            .includes(&lib.include_paths)
            // rte_thread_register is still marked experimental in 22.11.
            .define("ALLOW_EXPERIMENTAL_API", None)
            .flag_if_supported("-Wno-deprecated-declarations")
            .warnings(true);
        for (k, v) in &lib.defines {
            cc.define(k, v.as_deref());
        }
        // DPDK's headers expect rte_config.h first and the build's -march
        // (pkg-config --cflags carries both).
        let cflags = std::process::Command::new("pkg-config")
            .args(["--cflags", "libdpdk"])
            .output()
            .expect("pkg-config runs");
        let cflags = String::from_utf8_lossy(&cflags.stdout).into_owned();
        let mut words = cflags.split_whitespace();
        while let Some(w) = words.next() {
            if w == "-include" {
                if let Some(file) = words.next() {
                    cc.flag("-include").flag(file);
                }
            } else if w.starts_with("-march") || w.starts_with("-m") && !w.starts_with("-mno") {
                cc.flag(w);
            }
        }
        cc.compile("sluice_dpdk_shim");
        for dir in &lib.link_paths {
            println!("cargo:rustc-link-search=native={}", dir.display());
        }
        for name in &lib.libs {
            println!("cargo:rustc-link-lib=dylib={name}");
        }
    }
}
