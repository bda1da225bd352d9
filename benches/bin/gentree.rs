//! `gentree DIR [FILES] [BYTES]`: writes the deterministic benchmark tree (see
//! `nullspace_benches::generate_tree`); 20,000 files and 500 MB by default.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: gentree DIR [FILES] [BYTES]")?;
    let files: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20_000);
    let bytes: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(500_000_000);
    let total = nullspace_benches::generate_tree(dir.as_ref(), files, bytes)?;
    println!("{files} files, {total} bytes in {dir}");
    Ok(())
}
