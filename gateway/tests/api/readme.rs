//! The README's gateway example, run as it is (only the address changed) against a test stack.

use super::helpers::stack;

#[tokio::test]
async fn the_readme_example_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let block = readme
        .split("<!-- gateway-example:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- gateway-example:end -->").next())
        .expect("README.md holds the gateway example between its markers");
    let script = block.trim().trim_start_matches("```bash").trim_end_matches("```");
    // The example needs curl and jq. `./dev test` installs both when missing, but a bare
    // `cargo nextest` on a developer's machine without them says so and skips; in CI (`CI` set,
    // as CI sets `CI=true`) a missing tool fails the test, so the example never goes unchecked.
    let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
    for tool in ["curl", "jq"] {
        let found = std::process::Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                !in_ci,
                "`{tool}` is not installed, and CI must run the README example: install {tool} on the CI machine"
            );
            eprintln!("SKIPPED: `{tool}` is not installed; the README example needs it (outside CI only)");
            return;
        }
    }
    let s = stack().await;
    let address = s.gateway().base_url.trim_start_matches("http://").to_owned();
    let script = script.replace("localhost:4000", &address);
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new("bash").args(["-euo", "pipefail", "-c", &script]).output(),
    )
    .await
    .expect("the example ends within 60 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {}: {stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    for expected in [
        r#""role":"ORGANIZER""#,
        r#"{"name":"NA","shards":["na-1"]}"#,
        r#""remainingQuantity":100"#,
        r#""code":"REGION_MISMATCH""#,
        r#""status":"PAID""#,
        r#""event":{"title":"Indie Night"}"#,
    ] {
        assert!(stdout.contains(expected), "{expected} missing from:\n{stdout}");
    }
    // The only error is the deliberate region mismatch; the idempotent retry placed no second order.
    assert_eq!(stdout.matches(r#""errors""#).count(), 1, "{stdout}");
    assert_eq!(stdout.matches(r#""event":{"title":"Indie Night"}"#).count(), 1, "one order listed: {stdout}");
}
