//! Bad input gets a clear error, nothing already stored is lost, and the store keeps
//! serving.

use mooncake_client::{ErrorCode, ReplicateConfig};
use mooncake_tests::{bin, client, store_env, value_for, Master, Store};
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly() {
    let m = Master::start(&[]);
    let _s = Store::start(&store_env(&m, "32mb"));
    let c = client(&m).await;
    let rc = ReplicateConfig::default();
    let keep = value_for("keep", 10_000);
    c.put("keep", &keep, &rc).await.unwrap();

    // Empty key.
    let e = c.put("", b"x", &rc).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams);
    assert!(e.message.contains("empty key"), "{e}");
    assert!(c.get("").await.is_err());

    // Larger than any segment.
    let big = vec![7u8; 40 << 20];
    let e = c.put("big", &big, &rc).await.unwrap_err();
    assert!(e.code.code() < 0, "{e}");
    assert!(!c.exist("big").await.unwrap());

    // Mismatched batch lengths: every entry INVALID_PARAMS.
    let keys = vec!["a".to_string(), "b".to_string()];
    let r = c.put_batch(&keys, &[b"1".as_slice()], &rc).await;
    assert_eq!(r.len(), 2);
    assert!(r
        .iter()
        .all(|r| r.as_ref().unwrap_err().code == ErrorCode::InvalidParams));

    // Unregistered pointers.
    let mut buf = vec![0u8; 4096];
    let p = buf.as_mut_ptr() as usize;
    let e = unsafe { c.put_from("k-unreg", p, 4096, &rc).await }.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams);
    assert!(e.message.contains("register"), "{e}");
    let e = unsafe { c.get_into("keep", p, 4096).await }.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams);
    assert!(c.unregister_buffer(p).is_err());

    // Registered but too small for the object.
    unsafe { c.register_buffer(p, 4096) }.unwrap();
    let e = unsafe { c.get_into("keep", p, 4096).await }.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams);
    assert!(e.message.contains("smaller"), "{e}");
    c.unregister_buffer(p).unwrap();

    // Malformed environment: the store exits non-zero naming the variable.
    let mut env = store_env(&m, "32mb");
    env.retain(|(k, _)| k != "MOONCAKE_GLOBAL_SEGMENT_SIZE");
    env.push(("MOONCAKE_GLOBAL_SEGMENT_SIZE".into(), "50%".into()));
    let out = Command::new(bin("mooncake_store"))
        .args(["--port", "0"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MOONCAKE_GLOBAL_SEGMENT_SIZE"), "{err}");
    let out = Command::new(bin("mooncake_store"))
        .args(["--port", "0"])
        .env_clear()
        .env("MOONCAKE_PROTOCOL", "pigeon")
        .env("MOONCAKE_MASTER", m.addr())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MOONCAKE_PROTOCOL"));

    // Nothing stored was lost; the pool still serves.
    assert_eq!(c.get("keep").await.unwrap(), keep);
    c.put("after", b"hello", &rc).await.unwrap();
    assert_eq!(c.get("after").await.unwrap(), b"hello");
}
