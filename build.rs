//! Puts the git commit into `--version` when built from a checkout: AUTOLABEL_VERSION is
//! "0.1.0 (1a2b3c4)" there, and just "0.1.0" without git or outside a repository.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    println!("cargo:rerun-if-changed=build.rs");
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            println!("cargo:rustc-env=AUTOLABEL_VERSION={version} ({commit})");
            // Build again when HEAD moves: a checkout, or a commit on the branch.
            let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                watched.push(branch);
            }
            for name in watched {
                if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
                    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
                    if path.exists() {
                        println!("cargo:rerun-if-changed={}", path.display());
                    }
                }
            }
        }
        None => println!("cargo:rustc-env=AUTOLABEL_VERSION={version}"),
    }
}
