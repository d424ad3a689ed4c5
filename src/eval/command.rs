//! The `command` grader: an external program decides, for answers no pattern can judge
//! (code that must pass hidden tests). It runs sandboxed: in new user, network and PID
//! namespaces (`unshare`, util-linux) so it has no network and everything it starts dies
//! with it, in a fresh temporary directory, with a clean environment and a timeout.
//!
//! The program gets the answer on stdin and the dataset line as JSON in the file named by
//! `TIERWISE_EVAL_ITEM`. Exit 0: right; exit 1: wrong; anything else, or the timeout, is
//! a grader error (counted wrong, and reported). `{dataset_dir}` in `argv` is the dataset
//! file's directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::grade::Grade;

/// The sandbox's launcher: the program runs as `unshare SANDBOX... -- argv`.
const SANDBOX: [&str; 6] = ["--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child"];

/// How much of a failing grader's output is kept for the report.
const OUTPUT_TAIL: usize = 600;

static RUNS: AtomicU64 = AtomicU64::new(0);

/// Whether the sandbox can be made here; the reason when not.
pub async fn sandbox_available() -> Result<(), String> {
    let status = Command::new("unshare")
        .args(SANDBOX)
        .arg("--")
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await;
    match status {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`unshare {}` failed ({}): {}; user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone)",
            SANDBOX.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(err) => Err(format!("cannot run `unshare` (util-linux): {err}")),
    }
}

/// Grades `answer` by running `argv` on it in the sandbox.
pub async fn grade(argv: &[String], timeout: Duration, answer: &str, item: &Value, dataset_dir: &Path) -> Grade {
    let dir = std::env::temp_dir().join(format!(
        "tierwise-grade-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let graded = run(argv, timeout, answer, item, dataset_dir, &dir).await;
    if let Err(err) = tokio::fs::remove_dir_all(&dir).await {
        tracing::debug!(error = %err, dir = %dir.display(), "cannot remove a grader's directory");
    }
    graded.unwrap_or_else(Grade::failed)
}

async fn run(
    argv: &[String],
    timeout: Duration,
    answer: &str,
    item: &Value,
    dataset_dir: &Path,
    dir: &PathBuf,
) -> Result<Grade, String> {
    tokio::fs::create_dir_all(dir).await.map_err(|e| format!("cannot make the grader's directory: {e}"))?;
    let item_file = dir.join("item.json");
    tokio::fs::write(&item_file, item.to_string()).await.map_err(|e| format!("cannot write the item file: {e}"))?;
    let dataset_dir = dataset_dir.display().to_string();
    let argv: Vec<String> = argv.iter().map(|a| a.replace("{dataset_dir}", &dataset_dir)).collect();
    let mut command = Command::new("unshare");
    command
        .args(SANDBOX)
        .arg("--")
        .args(&argv)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .env("HOME", dir)
        .env("TMPDIR", dir)
        .env("LANG", "C.UTF-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("TIERWISE_EVAL_ITEM", &item_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| format!("cannot start the grader {:?}: {e}", argv[0]))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A grader that never reads its input is its own business.
        let _ = stdin.write_all(answer.as_bytes()).await;
    }
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(output) => output.map_err(|e| format!("the grader failed: {e}"))?,
        Err(_) => return Err(format!("the grader timed out after {} ms", timeout.as_millis())),
    };
    match output.status.code() {
        Some(0) => Ok(Grade { correct: true, extracted: None, error: None }),
        Some(1) => Ok(Grade { correct: false, extracted: None, error: None }),
        code => {
            let said = String::from_utf8_lossy(&output.stderr);
            let said = said.trim();
            let tail = &said[said.len() - tail_start(said)..];
            let code = code.map_or_else(|| "a signal".to_string(), |c| format!("code {c}"));
            Err(format!("the grader exited with {code}: {tail}"))
        }
    }
}

/// How many bytes of `text`'s end to keep: at most `OUTPUT_TAIL`, on a char boundary.
fn tail_start(text: &str) -> usize {
    let mut keep = text.len().min(OUTPUT_TAIL);
    while !text.is_char_boundary(text.len() - keep) {
        keep -= 1;
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    async fn grade_with(script: &str, answer: &str, timeout_ms: u64) -> Grade {
        sandbox_available().await.unwrap();
        let item = json!({"id": "t1", "expected": "42"});
        grade(&sh(script), Duration::from_millis(timeout_ms), answer, &item, Path::new("/tmp")).await
    }

    #[tokio::test]
    async fn exit_codes_say_right_wrong_or_broken() {
        let script = r#"read answer; grep -q '"expected":"42"' "$TIERWISE_EVAL_ITEM" && [ "$answer" = 42 ]"#;
        assert!(grade_with(script, "42\n", 10_000).await.correct);
        let wrong = grade_with(script, "41\n", 10_000).await;
        assert_eq!((wrong.correct, wrong.error), (false, None));
        let broken = grade_with("echo boom >&2; exit 3", "", 10_000).await;
        assert!(!broken.correct);
        assert_eq!(broken.error.as_deref(), Some("the grader exited with code 3: boom"));
    }

    #[tokio::test]
    async fn the_sandbox_has_no_network_and_its_own_directory() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = format!(
            "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' 2>/dev/null && exit 1; [ \"$(pwd)\" = \"$HOME\" ] && [ -f item.json ]"
        );
        let graded = grade_with(&script, "", 10_000).await;
        assert!(graded.correct, "{graded:?}");
        assert!(listener.accept().is_err(), "the grader reached a port on the host");
    }

    #[tokio::test]
    async fn a_grader_that_hangs_is_stopped_with_everything_it_started() {
        let marker = std::env::temp_dir().join(format!("tierwise-grade-orphan-{}", std::process::id()));
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let graded = grade_with(&script, "", 300).await;
        assert_eq!(graded.error.as_deref(), Some("the grader timed out after 300 ms"));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "a process the grader started outlived it");
    }
}
