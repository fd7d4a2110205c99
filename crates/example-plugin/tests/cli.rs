//! The example plugin runs through the real command line, beside the built-in plugins.

use std::process::Command;

#[test]
fn a_plugin_of_our_own_runs_through_the_cli_and_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "stages:\n  hello:\n    uses: cmd\n    with: {run: 'echo hello > \"$PIPE_OUT/t\"', outputs: {t: t}}\n  loud:\n    uses: example.upper\n    inputs: {text: hello.t}\n    with: {times: 2}\n",
    )
    .unwrap();
    let pipe = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pipe-example"))
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let first = pipe(&["run", "p.yaml"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("artifacts/loud/upper.txt")).unwrap(),
        "HELLO\nHELLO\n"
    );
    let again = pipe(&["run", "p.yaml"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 ran, 2 cached"));
    let plugins = pipe(&["plugins"]);
    assert!(String::from_utf8_lossy(&plugins.stdout).contains("example.upper (v1)"));
}
