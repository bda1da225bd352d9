//! `mklayer DIR OUT [LEVEL]`: walks DIR as a build context and writes it as one gzip layer
//! (level 6 by default) to OUT, the way a `COPY . /` step does; prints the digests. For the
//! side-by-side comparison with `tar | gzip` (benches/layer_vs_tar.sh).

use std::io::{BufWriter, Write as _};

use nullspace_engine::context::walk::Walker;
use nullspace_native::layer::{Compression, CopyOptions, Layer, LayerOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: mklayer DIR OUT [LEVEL]";
    let dir = std::path::PathBuf::from(args.next().ok_or(usage)?);
    let out = args.next().ok_or(usage)?;
    let level: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(6);
    let walked = Walker::new(&dir).walk()?;
    let mut layer = Layer::new();
    layer.add_copy(&dir, &walked.entries, &CopyOptions { dest: "/".into(), chown: None, chmod: None })?;
    let opts = LayerOptions { compression: Compression::Gzip(level), ..LayerOptions::default() };
    let mut file = BufWriter::with_capacity(1 << 20, std::fs::File::create(&out)?);
    let info = layer.write(&mut file, &opts)?;
    file.flush()?;
    println!("{} {} {} {}", info.digest, info.diff_id, info.size, info.uncompressed_size);
    Ok(())
}
