use super::*;

#[test]
fn path_order_puts_slash_first() {
    let mut paths = vec![
        PathBuf::from("a-c"),
        PathBuf::from("a/b"),
        PathBuf::from("a"),
        PathBuf::from("a.b"),
    ];
    paths.sort_by(|a, b| path_order(a, b));
    assert_eq!(
        paths,
        [
            Path::new("a"),
            Path::new("a/b"),
            Path::new("a-c"),
            Path::new("a.b")
        ]
    );
}
