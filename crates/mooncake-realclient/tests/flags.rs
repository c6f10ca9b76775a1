//! The `mooncake_client` binary on bad input: every mistake exits 2 (a configuration
//! error) with a message naming the flag or the file, never a panic; `--help` lists
//! the reference's flags.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mooncake_client"))
        .args(args)
        .output()
        .expect("mooncake_client runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_reference_flags() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--master_server_address",
        "--host",
        "--port",
        "--global_segment_size",
        "--protocol",
        "--device_names",
        "--metadata_server",
        "--threads",
        "--enable_offload",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help:\n{out}");
    }
}

#[test]
fn bad_flags_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad_json = dir.path().join("bad.json");
    std::fs::write(&bad_json, "{\"port\": [1]}").unwrap();
    let missing = dir.path().join("missing.flags");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--global_segment_size=4 parsecs".into()],
            "--global_segment_size",
        ),
        (
            vec!["--global_segment_size=0".into()],
            "--global_segment_size",
        ),
        (vec!["--protocol=smoke".into()], "protocol"),
        (vec!["--port=0".into()], "--port"),
        (vec!["--port=65536".into()], "port"),
        (vec!["--threads=0".into()], "--threads"),
        (
            vec!["--master_server_adress=a:1".into()],
            "--master_server_adress",
        ),
        (
            vec![format!("--flagfile={}", missing.display())],
            "missing.flags",
        ),
        (
            vec![format!("--config_path={}", bad_json.display())],
            "port",
        ),
        (vec!["--flagfile".into()], "flagfile"),
    ];
    for (args, word) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = run(&a);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(word), "{args:?} should name {word}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
