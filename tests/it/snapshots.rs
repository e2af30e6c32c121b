//! The dry run of every example plan, as text, Markdown and JSON, against reviewed snapshots
//! (`tests/it/snapshots/`; `cargo insta review` after an intended change).

use std::path::Path;
use std::process::Command;

#[test]
fn every_example_plan_dry_run_matches_its_snapshots() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut plans: Vec<String> = std::fs::read_dir(root.join("plans"))
        .expect("plans/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| Path::new(name).extension().is_some_and(|e| e == "yaml"))
        .collect();
    plans.sort();
    assert!(plans.len() >= 4, "{plans:?}");
    for name in plans {
        let stem = name.trim_end_matches(".yaml");
        for format in ["text", "markdown", "json"] {
            // A relative path from the crate's folder: nothing machine-specific can leak in.
            let out = Command::new(env!("CARGO_BIN_EXE_mailplan"))
                .current_dir(root)
                .args(["plan", &format!("plans/{name}"), "--format", format])
                .env("NO_COLOR", "1")
                .output()
                .expect("runs");
            assert_eq!(
                out.status.code(),
                Some(0),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut stdout = String::from_utf8(out.stdout).expect("utf-8");
            if format == "json" {
                let doc: serde_json::Value = serde_json::from_str(&stdout).expect("json");
                stdout = serde_json::to_string_pretty(&doc).expect("json");
            }
            insta::assert_snapshot!(format!("{stem}.{format}"), stdout);
        }
    }
}
