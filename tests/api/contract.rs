//! The OpenAPI document is a contract a fuzzer can hold the live API to: schemathesis
//! (from PyPI; `scripts/test` installs it and names it in `HOOKLINE_SCHEMATHESIS`) runs
//! every check it has against a real API, with a bounded number of examples, and fails
//! on any server error, schema violation or status the document does not state.

use std::process::Stdio;

use hookline_tests::TestEnv;
use serde_json::json;

use crate::WAIT;

/// Where schemathesis's `st` is: `HOOKLINE_SCHEMATHESIS`, else `st` on the `PATH`.
fn schemathesis() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("HOOKLINE_SCHEMATHESIS") {
        return path.into();
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("st"))
        .find(|candidate| candidate.is_file());
    on_path.unwrap_or_else(|| {
        panic!("schemathesis is not installed: run scripts/test (it installs it), or `pip install schemathesis` and put `st` on the PATH")
    })
}

/// One real resource of each kind, so the fuzzer's requests reach the handlers' logic
/// rather than a 404: a `schemathesis.toml` naming their ids for every operation on
/// them but the deletes (which get ids from the create responses' links, so the seeded
/// resources live through the run, and a created resource is what a delete removes).
async fn seeded(api: &hookline_tests::ApiServer, key: &str) -> String {
    let key = Some(key);
    let (_, credential) = api
        .call(
            "POST",
            "/v1/credentials",
            key,
            Some(json!({"name": "c", "type": "token", "values": {"key": "X-K", "value": "v"}})),
        )
        .await;
    // Deliveries to a name that never resolves fail (and are retried) without reaching anyone.
    let webhook = json!({"name": "w", "active": true, "events": ["job.*"], "endpoints": [{"url": "https://receiver.hooks.invalid/h"}]});
    let (_, webhook) = api.call("POST", "/v1/webhooks", key, Some(webhook)).await;
    let webhook_id = webhook["id"].as_str().unwrap().to_owned();
    let log = format!("/v1/webhooks/{webhook_id}/deliveries");
    let logged = hookline_tests::eventually(WAIT, || async {
        api.call("GET", &log, key, None).await.1["data"].as_array().is_some_and(|d| !d.is_empty())
    })
    .await;
    assert!(logged, "the activation ping is in the log");
    let delivery = api.call("GET", &log, key, None).await.1["data"][0]["id"].as_str().unwrap().to_owned();
    let ids = [
        ("/v1/webhooks/{id}", webhook_id),
        ("/v1/credentials/{id}", credential["id"].as_str().unwrap().to_owned()),
        ("/v1/deliveries/{id}", delivery),
    ];
    let (_, document) = api.call("GET", "/v1/openapi.json", None, None).await;
    let mut config = String::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        let Some((_, id)) = ids.iter().find(|(prefix, _)| path.starts_with(prefix)) else { continue };
        for (method, operation) in item.as_object().unwrap() {
            if method != "delete" {
                let operation_id = operation["operationId"].as_str().unwrap();
                config += &format!(
                    "[[operations]]\ninclude-operation-id = \"{operation_id}\"\nparameters = {{ id = \"{id}\" }}\n\n"
                );
            }
        }
    }
    config
}

/// The committed document validates as OpenAPI 3.1 with `openapi-spec-validator`
/// (installed beside schemathesis).
#[test]
fn the_document_is_valid_openapi() {
    let validator = schemathesis().with_file_name("openapi-spec-validator");
    let document = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/api/openapi.json");
    let output = std::process::Command::new(&validator)
        .arg(document)
        .output()
        .unwrap_or_else(|err| panic!("running {}: {err}", validator.display()));
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.contains("OK"), "{said}");
}

/// One schemathesis run against `api` with every check but one (below); what it said.
async fn schemathesis_run(
    api: &hookline_tests::ApiServer,
    key: &str,
    config: Option<&std::path::Path>,
    filter: &[&str],
) -> (bool, String) {
    let st = schemathesis();
    let mut command = std::process::Command::new(&st);
    if let Some(config) = config {
        command.arg("--config-file").arg(config);
    }
    command
        .arg("--no-color")
        .arg("run")
        .arg(format!("{}/v1/openapi.json", api.base))
        // Every check but two. `positive_data_acceptance` expects every schema-valid
        // body to be accepted, and what hookline also checks cannot be said in JSON
        // Schema (an event type in this deployment's catalog, a URL whose host resolves
        // to a public address, a credential id of the caller's organisation).
        // `ensure_resource_availability` expects what a create answered to exist, but the
        // fuzzer repeats `Idempotency-Key` values, and a replayed create rightly answers
        // with a resource it has since deleted.
        .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance,ensure_resource_availability"])
        // One worker: with two threads, CPython 3.11's `ast` (which hypothesis uses to describe
        // its strategies) can fail with "AST constructor recursion depth mismatch".
        .args(["--max-examples", "15", "--seed", "1", "--workers", "1"])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--request-timeout", "20", "--suppress-health-check", "too_slow"])
        .args(filter)
        .stdin(Stdio::null());
    // The API answers on this test's runtime: wait for schemathesis off it.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|err| panic!("running {}: {err}", st.display()));
    let said = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{said}");
    (output.status.success(), said)
}

/// Three runs: with an organisation's key, every operation but the deletes on seeded
/// resources (which deletes, fed ids from list answers, would otherwise remove early),
/// then every organisation operation with nothing seeded, where the deletes get what
/// the creates made through the links; and the operator's operations with its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_schema_violation_or_undocumented_status() {
    let (operator, hash) = hookline_core::apikey::generate_operator_token();
    let env = TestEnv::with(&[("HOOKLINE__API__OPERATOR_TOKEN_HASHES", hash.as_str())]).await;
    let api = env.start_api().await;
    let services = env.start();
    let org = env.organization().await;
    let config = std::env::temp_dir().join(format!("hookline-schemathesis-{}.toml", env.id));
    std::fs::write(&config, seeded(&api, &org.api_key).await).unwrap();
    let organization_routes = ["--exclude-tag", "organizations"];
    let seeded_filter = ["--exclude-method", "DELETE", "--exclude-tag", "organizations"];
    let (passed, said) = schemathesis_run(&api, &org.api_key, Some(&config), &seeded_filter).await;
    let _ = std::fs::remove_file(&config);
    assert!(passed, "schemathesis found problems:\n{said}");
    assert!(said.contains("Tested: 21"), "every operation but the deletes was tested:\n{said}");
    assert!(!said.contains("Missing test data"), "every operation reached a real resource:\n{said}");

    let (passed, said) = schemathesis_run(&api, &org.api_key, None, &organization_routes).await;
    assert!(passed, "schemathesis found problems:\n{said}");
    assert!(said.contains("Tested: 24"), "every organisation operation was tested:\n{said}");

    // The operator's routes, with the operator token.
    let (passed, said) = schemathesis_run(&api, &operator, None, &["--include-tag", "organizations"]).await;
    assert!(passed, "schemathesis found problems:\n{said}");
    assert!(said.contains("Tested: 6"), "every operator operation was tested:\n{said}");
    drop((services, api));
    env.cleanup().await;
}
