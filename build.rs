//! Compresses the web view's page (`web/`) into the build, so that the
//! binary carries it gzipped and serves it as it is (`api::web`). The page
//! itself has no build step: these are the files as written.

use std::io::Write;

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for name in ["index.html", "app.js", "app.css"] {
        let path = format!("web/{name}");
        println!("cargo:rerun-if-changed={path}");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes).expect("in memory");
        let packed = gz.finish().expect("in memory");
        std::fs::write(out.join(format!("{name}.gz")), packed).expect("OUT_DIR is writable");
    }
}
