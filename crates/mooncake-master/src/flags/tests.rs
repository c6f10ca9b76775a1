//! Every accepted spelling, the defaults, the file layering, and errors that name the flag.

use super::*;
use crate::config::AllocationStrategy;
use std::time::Duration;

fn run(args: &[&str]) -> Result<MasterConfig, FlagError> {
    match parse(args.iter().copied())? {
        Command::Run(p) => Ok(p.config),
        other => panic!("expected a run, got {other:?}"),
    }
}

fn err(args: &[&str]) -> String {
    run(args).unwrap_err().0
}

#[test]
fn no_flags_give_the_defaults() {
    assert_eq!(run(&[]).unwrap(), MasterConfig::default());
}

#[test]
fn table_defaults_match_the_config_defaults() {
    for f in FLAGS {
        let mut c = MasterConfig::default();
        (f.apply)(&mut c, f.default).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_eq!(
            c,
            MasterConfig::default(),
            "default of --{} disagrees",
            f.name
        );
    }
}

#[test]
fn value_forms_space_equals_and_single_dash() {
    let c = run(&[
        "--rpc_port",
        "1234",
        "--metrics_port=9100",
        "-cluster_id",
        "x",
    ])
    .unwrap();
    assert_eq!((c.rpc_port, c.metrics_port), (1234, 9100));
    assert_eq!(c.cluster_id, "x");
    assert_eq!(run(&["--port=77"]).unwrap().rpc_port, 77);
    assert_eq!(run(&["--port", "78"]).unwrap().rpc_port, 78);
}

#[test]
fn boolean_forms() {
    let on = ["--enable_ha", "--etcd_endpoints=a:1"];
    assert!(run(&on).unwrap().enable_ha);
    assert!(
        run(&["--enable_ha=true", "--etcd_endpoints=a:1"])
            .unwrap()
            .enable_ha
    );
    assert!(
        run(&["--enable_ha", "true", "--etcd_endpoints=a:1"])
            .unwrap()
            .enable_ha
    );
    assert!(!run(&["--enable_ha=false"]).unwrap().enable_ha);
    assert!(
        !run(&["--enable_metric_reporting=0"])
            .unwrap()
            .enable_metric_reporting
    );
    assert!(
        !run(&["--noenable_metric_reporting"])
            .unwrap()
            .enable_metric_reporting
    );
    assert!(
        !run(&["--enable_metric_reporting", "false"])
            .unwrap()
            .enable_metric_reporting
    );
    // A bare boolean does not swallow the next flag.
    let c = run(&[
        "--allow_evict_soft_pinned_objects=false",
        "--enable_http_metadata_server",
        "--rpc_port",
        "5",
    ])
    .unwrap();
    assert!(c.enable_http_metadata_server && !c.allow_evict_soft_pinned_objects);
    assert_eq!(c.rpc_port, 5);
}

#[test]
fn durations_in_both_units() {
    let c = run(&["--default_kv_lease_ttl=500ms", "--client_ttl", "3"]).unwrap();
    assert_eq!(c.default_kv_lease_ttl, Duration::from_millis(500));
    assert_eq!(c.client_ttl, Duration::from_secs(3));
    let c = run(&[
        "--default_kv_lease_ttl",
        "2500",
        "--default_kv_soft_pin_ttl=1m",
        "--max_kv_soft_pin_ttl=2h",
    ])
    .unwrap();
    assert_eq!(c.default_kv_lease_ttl, Duration::from_millis(2500));
    assert_eq!(c.default_kv_soft_pin_ttl, Duration::from_secs(60));
    assert_eq!(c.max_kv_soft_pin_ttl, Duration::from_secs(7200));
    let c = run(&[
        "--put_start_discard_timeout_sec=5",
        "--put_start_release_timeout_sec=1m",
        "--client_ttl=10s",
    ])
    .unwrap();
    assert_eq!(c.put_start_discard_timeout, Duration::from_secs(5));
    assert_eq!(c.put_start_release_timeout, Duration::from_secs(60));
    assert_eq!(c.client_ttl, Duration::from_secs(10));
}

#[test]
fn other_values() {
    let c = run(&[
        "--etcd_endpoints=h1:2379; h2:2379;",
        "--allocation_strategy",
        "free_ratio_first",
        "--eviction_ratio=0.1",
        "--eviction_high_watermark_ratio",
        "0.8",
        "--rpc_address",
        "127.0.0.1",
    ])
    .unwrap();
    assert_eq!(c.etcd_endpoints, vec!["h1:2379", "h2:2379"]);
    assert_eq!(c.allocation_strategy, AllocationStrategy::FreeRatioFirst);
    assert_eq!(
        (c.eviction_ratio, c.eviction_high_watermark_ratio),
        (0.1, 0.8)
    );
    assert_eq!(c.rpc_address, "127.0.0.1");
}

#[test]
fn explicit_metadata_address_enables_the_server() {
    assert!(!run(&[]).unwrap().enable_http_metadata_server);
    let c = run(&["--http_metadata_server_host", "127.0.0.1"]).unwrap();
    assert!(c.enable_http_metadata_server);
    let c = run(&["--http_metadata_server_port=8081"]).unwrap();
    assert!(c.enable_http_metadata_server);
    assert_eq!(c.http_metadata_server_port, 8081);
}

#[test]
fn the_seed_manifest_command_line() {
    let c = run(&[
        "--rpc_address",
        "10.0.0.5",
        "--rpc_port",
        "50051",
        "--http_metadata_server_host",
        "10.0.0.5",
        "--http_metadata_server_port",
        "8080",
        "--metrics_port",
        "9003",
    ])
    .unwrap();
    assert_eq!(c.rpc_address, "10.0.0.5");
    assert!(c.enable_http_metadata_server);
    assert_eq!(c.http_metadata_server_host, "10.0.0.5");
}

#[test]
fn bad_values_name_the_flag() {
    for (args, flag) in [
        (&["--rpc_port=notanumber"][..], "rpc_port"),
        (&["--port", "70000"][..], "rpc_port"),
        (&["--metrics_port="][..], "metrics_port"),
        (&["--enable_ha=maybe"][..], "enable_ha"),
        (&["--default_kv_lease_ttl=soon"][..], "default_kv_lease_ttl"),
        (&["--client_ttl=x"][..], "client_ttl"),
        (&["--client_ttl=0"][..], "client_ttl"),
        (&["--eviction_ratio=1.5"][..], "eviction_ratio"),
        (
            &["--eviction_high_watermark_ratio=abc"][..],
            "eviction_high_watermark_ratio",
        ),
        (&["--allocation_strategy=best"][..], "allocation_strategy"),
        (&["--rpc_address="][..], "rpc_address"),
        (&["--rpc_port"][..], "rpc_port"),
        (&["--enable_ha"][..], "etcd_endpoints"),
        (&["--noenable_ha=true"][..], "noenable_ha"),
        (
            &["--default_kv_soft_pin_ttl=2d"][..],
            "default_kv_soft_pin_ttl",
        ),
    ] {
        let e = err(args);
        assert!(e.contains(flag), "{args:?}: {e}");
    }
}

#[test]
fn unknown_flags_and_stray_words_are_errors() {
    let e = err(&["--rpc_prot=1"]);
    assert!(
        e.contains("--rpc_prot") && e.contains("did you mean --rpc_port?"),
        "{e}"
    );
    let e = err(&["--enable_hs"]);
    assert!(e.contains("did you mean --enable_ha?"), "{e}");
    let e = err(&["--nosuch"]);
    assert!(
        !e.contains("did you mean"),
        "a far name suggests nothing: {e}"
    );
    assert!(err(&["--nosuch"]).contains("nosuch"));
    assert!(err(&["--norpc_port"]).contains("norpc_port"));
    assert!(err(&["stray"]).contains("stray"));
    assert!(err(&["--"]).contains("--"));
}

fn parsed(args: &[&str]) -> Parsed {
    match parse(args.iter().copied()).unwrap() {
        Command::Run(p) => *p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn reference_only_flags_are_accepted_and_reported() {
    let p = parsed(&[
        "--rpc_conn_timeout_seconds",
        "8",
        "--enable_gc",
        "--rpc_port=1",
    ]);
    assert_eq!(p.ignored, vec!["rpc_conn_timeout_seconds", "enable_gc"]);
    assert_eq!(p.config.rpc_port, 1);
    assert_eq!(p.rpc_threads, None);
}

#[test]
fn thread_counts_size_the_runtime() {
    assert_eq!(parsed(&["--rpc_thread_num=3"]).rpc_threads, Some(3));
    assert_eq!(parsed(&["--max_threads", "6"]).rpc_threads, Some(6));
    let p = parsed(&["--max_threads=6", "--rpc_thread_num=2"]);
    assert_eq!(
        p.rpc_threads,
        Some(2),
        "rpc_thread_num wins over the older flag"
    );
    assert!(p.ignored.is_empty());
    assert!(err(&["--rpc_thread_num=0"]).contains("rpc_thread_num"));
    assert!(err(&["--max_threads=lots"]).contains("max_threads"));
}

#[test]
fn help_lists_every_flag_with_its_default() {
    let Command::Help(text) = parse(["--help"]).unwrap() else {
        panic!("no help")
    };
    for f in FLAGS {
        assert!(
            text.contains(&format!("--{}", f.name)),
            "{} missing",
            f.name
        );
        assert!(text.contains(&format!("(default: {:?})", f.default)));
    }
    assert!(text.contains("--port"));
    assert!(matches!(
        parse(["--rpc_port=1", "-h"]).unwrap(),
        Command::Help(_)
    ));
}

#[test]
fn config_file_is_layered_under_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("master.yaml");
    std::fs::write(
        &yaml,
        "rpc_port: 6000\nmetrics_port: 6001\ndefault_kv_lease_ttl: 2s\nenable_ha: false\n",
    )
    .unwrap();
    let y = yaml.to_str().unwrap();
    let c = run(&["--config_path", y, "--metrics_port=7001"]).unwrap();
    assert_eq!(c.rpc_port, 6000);
    assert_eq!(
        c.metrics_port, 7001,
        "flags override the file, wherever they stand"
    );
    assert_eq!(c.default_kv_lease_ttl, Duration::from_secs(2));
    let c = run(&["--metrics_port=7001", "--config_path", y]).unwrap();
    assert_eq!(c.metrics_port, 7001);

    let json = dir.path().join("master.json");
    std::fs::write(
        &json,
        r#"{"http_metadata_server_port": 8181, "eviction_ratio": 0.2}"#,
    )
    .unwrap();
    let c = run(&[&format!("--config_path={}", json.display())]).unwrap();
    assert!(
        c.enable_http_metadata_server,
        "the file's explicit port starts the server too"
    );
    assert_eq!(c.eviction_ratio, 0.2);

    std::fs::write(&json, r#"{"rpc_port": "nope"}"#).unwrap();
    assert!(err(&["--config_path", json.to_str().unwrap()]).contains("rpc_port"));
    std::fs::write(&json, r#"{"bogus_key": 1}"#).unwrap();
    assert!(err(&["--config_path", json.to_str().unwrap()]).contains("bogus_key"));
    assert!(err(&["--config_path=/nonexistent.json"]).contains("config_path"));
}
