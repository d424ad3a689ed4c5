//! The deploy/ files that CI checks without a Docker engine: every PromQL query of the
//! Grafana dashboard against `tierwise::metrics::EXPORTED` (names, types, labels, and that
//! every exported family is on the dashboard), and the compose stack's tierwise config.
//! `scripts/check-deploy` lints the rest (compose, Dockerfile, Prometheus config).

use std::collections::BTreeSet;
use std::path::PathBuf;

use regex::Regex;
use serde_json::Value;
use tierwise::metrics::EXPORTED;

const DASHBOARD: &str = "deploy/grafana/tierwise.json";
const DATASOURCES: &str = "deploy/grafana/provisioning/datasources/prometheus.yml";
/// The uid the provisioned Prometheus datasource has; panels refer to it.
const DATASOURCE_UID: &str = "tierwise-prometheus";
/// Labels Prometheus adds to every scraped series: selecting on them is always valid.
const TARGET_LABELS: &[&str] = &["job", "instance"];

fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

struct Family {
    name: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
}

fn family(name: &str) -> Option<Family> {
    EXPORTED.iter().find(|(n, _, _)| *n == name).map(|&(name, kind, labels)| Family { name, kind, labels })
}

/// One PromQL expression of the dashboard and where it is.
struct Query {
    place: String,
    expr: String,
    /// A variable's `label_values(metric, label)`: names a series, not a computation.
    lookup: bool,
}

/// Every `expr` in the dashboard, found by walking the whole JSON, with the title of the
/// panel it belongs to; and every template variable's query.
fn queries(dashboard: &Value) -> Vec<Query> {
    fn walk(value: &Value, place: &str, out: &mut Vec<Query>) {
        match value {
            Value::Object(map) => {
                let place = match (map.get("title").and_then(Value::as_str), map.get("id")) {
                    (Some(title), Some(id)) => format!("panel {id} \"{title}\""),
                    (Some(title), None) => format!("panel \"{title}\""),
                    _ => place.to_string(),
                };
                for (key, child) in map {
                    match (key.as_str(), child) {
                        ("expr", Value::String(expr)) => {
                            out.push(Query { place: place.clone(), expr: expr.clone(), lookup: false })
                        }
                        ("templating", _) => {}
                        _ => walk(child, &place, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, place, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, "dashboard", &mut out);
    let variables = dashboard.pointer("/templating/list").and_then(Value::as_array).cloned().unwrap_or_default();
    for variable in &variables {
        let name = variable.get("name").and_then(Value::as_str).unwrap_or("?");
        let query = variable.get("query").and_then(|q| q.as_str().or_else(|| q.get("query").and_then(Value::as_str)));
        if let Some(query) = query.filter(|q| q.contains("tierwise_")) {
            let lookup = query.trim_start().starts_with("label_values(");
            out.push(Query { place: format!("variable ${name}"), expr: query.to_string(), lookup });
        }
    }
    out
}

/// `expr` with the contents of every string literal blanked, so label values never read
/// as metric or label names.
fn without_strings(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                }
            }
            None => {
                if c == '"' || c == '\'' || c == '`' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// The index just past the group that opens with `open` at `start`.
fn group_end(text: &str, start: usize, open: u8, close: u8) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in text.bytes().enumerate().skip(start) {
        if b == open {
            depth += 1;
        } else if b == close {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(i + 1);
            }
        }
    }
    None
}

/// The index where the group that closes with `close` just before `end` opens.
fn group_start(text: &str, end: usize, open: u8, close: u8) -> Option<usize> {
    let mut depth = 0usize;
    for i in (0..end).rev() {
        let b = text.as_bytes()[i];
        if b == close {
            depth += 1;
        } else if b == open {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// A reference to a tierwise series inside an expression.
struct Reference {
    family: Family,
    /// `_bucket`, `_sum`, `_count`, or "" for the family's own name.
    suffix: &'static str,
    start: usize,
    end: usize,
}

/// Every problem with one expression: unknown metrics, a type used the wrong way, label
/// names a family does not have. Returns the families it uses.
fn check(query: &Query, problems: &mut Vec<String>) -> BTreeSet<&'static str> {
    let text = without_strings(&query.expr);
    let mut report = |what: String| problems.push(format!("{}: `{}`: {what}", query.place, query.expr));
    let ident = Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*").unwrap();
    let mut refs = Vec::new();
    for m in ident.find_iter(&text).filter(|m| m.as_str().starts_with("tierwise_")) {
        let name = m.as_str();
        let found = family(name).map(|f| (f, "")).or_else(|| {
            ["_bucket", "_sum", "_count"]
                .into_iter()
                .find_map(|suffix| name.strip_suffix(suffix).and_then(family).map(|f| (f, suffix)))
        });
        match found {
            None => report(format!("{name} is not in tierwise::metrics::EXPORTED")),
            Some((f, suffix)) if f.kind == "histogram" && suffix.is_empty() => {
                report(format!("{name} is a histogram: query {name}_bucket, _sum or _count"))
            }
            Some((f, suffix)) if f.kind != "histogram" && !suffix.is_empty() => {
                report(format!("{name}: {} is a {}, only histograms have {suffix}", f.name, f.kind))
            }
            Some((family, suffix)) => refs.push(Reference { family, suffix, start: m.start(), end: m.end() }),
        }
    }

    let matcher = Regex::new(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)").unwrap();
    for r in &refs {
        let series = format!("{}{}", r.family.name, r.suffix);
        let allowed = |label: &str| {
            r.family.labels.contains(&label)
                || TARGET_LABELS.contains(&label)
                || (label == "le" && r.suffix == "_bucket")
        };
        // The selector right after the name, and whether a range `[...]` follows it.
        let mut after = r.end;
        if text[after..].trim_start().starts_with('{') {
            let open = after + text[after..].find('{').unwrap_or(0);
            let close = group_end(&text, open, b'{', b'}').unwrap_or(text.len());
            for m in matcher.captures_iter(&text[open..close]) {
                if !allowed(&m[1]) {
                    report(format!("{series} has no label \"{}\" (its labels: {:?})", &m[1], r.family.labels));
                }
            }
            after = close;
        }
        if query.lookup {
            continue;
        }
        let ranged = text[after..].trim_start().starts_with('[');
        let before = text[..r.start].trim_end();
        let in_rate = ["rate(", "irate(", "increase("].iter().any(|f| before.ends_with(f));
        let cumulative = r.family.kind == "counter" || r.family.kind == "histogram";
        if cumulative && !(in_rate && ranged) {
            report(format!(
                "{series} is cumulative ({}): wrap it in rate(...[range]) or increase(...[range])",
                r.family.kind
            ));
        }
        if r.family.kind == "gauge" && (in_rate || (ranged && !before.ends_with("_over_time("))) {
            report(format!("{series} is a gauge: use it as it is or in *_over_time(), not rate()/increase()"));
        }
    }

    // Grouping: `by (...)` / `without (...)` apply to their aggregation's argument;
    // `on`, `ignoring`, `group_left`, `group_right` to the expression's series.
    let clause = Regex::new(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)").unwrap();
    for c in clause.captures_iter(&text) {
        let whole = c.get(0).unwrap();
        let labels: Vec<&str> = c[2].split(',').map(str::trim).filter(|l| !l.is_empty()).collect();
        let scope: Vec<&Reference> = if matches!(&c[1], "by" | "without") {
            let next = whole.end() + (text[whole.end()..].len() - text[whole.end()..].trim_start().len());
            let prev = text[..whole.start()].trim_end().len();
            let argument = if text[next..].starts_with('(') {
                group_end(&text, next, b'(', b')').map(|end| (next, end))
            } else if text[..prev].ends_with(')') {
                group_start(&text, prev, b'(', b')').map(|start| (start, prev))
            } else {
                None
            };
            match argument {
                Some((from, to)) => refs.iter().filter(|r| r.start >= from && r.end <= to).collect(),
                None => {
                    report(format!("cannot find the argument of `{}`", whole.as_str()));
                    continue;
                }
            }
        } else {
            refs.iter().collect()
        };
        for label in labels {
            let has = |r: &&Reference| {
                r.family.labels.contains(&label)
                    || TARGET_LABELS.contains(&label)
                    || (label == "le" && r.suffix == "_bucket")
            };
            let missing: Vec<&str> = if matches!(&c[1], "by" | "without") {
                scope.iter().filter(|r| !has(r)).map(|r| r.family.name).collect()
            } else if !scope.is_empty() && !scope.iter().any(has) {
                scope.iter().map(|r| r.family.name).collect()
            } else {
                Vec::new()
            };
            for name in missing.into_iter().collect::<BTreeSet<_>>() {
                report(format!("`{}`: {name} has no label \"{label}\"", whole.as_str()));
            }
        }
    }

    if query.lookup {
        let lookup = Regex::new(
            r"^\s*label_values\(\s*[A-Za-z_:][A-Za-z0-9_:]*\s*(\{[^}]*\})?\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$",
        )
        .unwrap();
        match lookup.captures(&text) {
            Some(c) => {
                for r in &refs {
                    if !r.family.labels.contains(&&c[2]) {
                        report(format!("{} has no label \"{}\"", r.family.name, &c[2]));
                    }
                }
            }
            None => report("expected label_values(metric, label)".to_string()),
        }
    }
    refs.iter().map(|r| r.family.name).collect()
}

#[test]
fn the_dashboard_queries_only_exported_metrics_and_covers_them_all() {
    let text = repo_file(DASHBOARD);
    let dashboard: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"));
    let panels = dashboard["panels"].as_array().unwrap_or_else(|| panic!("{DASHBOARD}: no \"panels\" array"));
    assert!(!panels.is_empty(), "{DASHBOARD}: no panels");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "{DASHBOARD}: schemaVersion below 36");
    assert!(
        repo_file(DATASOURCES).contains(&format!("uid: {DATASOURCE_UID}")),
        "{DATASOURCES} must provision the datasource uid {DATASOURCE_UID} the dashboard uses"
    );

    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        if !ids.insert(panel["id"].as_u64().unwrap_or(0)) {
            problems.push(format!("panel \"{title}\": id missing or not unique"));
        }
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("panel \"{title}\": no targets"));
        }
        for source in std::iter::once(&panel["datasource"]).chain(targets.iter().map(|t| &t["datasource"])) {
            if source["uid"] != DATASOURCE_UID {
                problems.push(format!("panel \"{title}\": datasource {source} is not uid {DATASOURCE_UID}"));
            }
        }
        if targets.iter().any(|t| !t["expr"].is_string()) {
            problems.push(format!("panel \"{title}\": a target without an expr"));
        }
    }

    let queries = queries(&dashboard);
    assert!(queries.len() >= panels.len() / 2, "{DASHBOARD}: found only {} queries", queries.len());
    let mut used = BTreeSet::new();
    for query in &queries {
        used.extend(check(query, &mut problems));
    }
    // Every family tierwise exports has a panel: a new metric fails here until the
    // dashboard shows it.
    for (name, kind, _) in EXPORTED {
        if !used.contains(name) {
            problems.push(format!("{name} ({kind}) is exported but no panel in {DASHBOARD} uses it"));
        }
    }
    assert!(problems.is_empty(), "{DASHBOARD} has {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "));
}

/// The checker itself: each bad query is caught, each good one passes.
#[test]
fn the_query_checker_catches_what_it_should() {
    let run = |expr: &str| {
        let mut problems = Vec::new();
        check(&Query { place: "panel \"t\"".into(), expr: expr.into(), lookup: false }, &mut problems);
        problems
    };
    let good = [
        r#"sum by (tier) (rate(tierwise_requests_total{task=~"$task"}[$__rate_interval])) / ignoring(tier) group_left sum(rate(tierwise_requests_total[5m]))"#,
        "histogram_quantile(0.95, sum by (tier, le) (rate(tierwise_request_duration_seconds_bucket[5m])))",
        "sum(rate(tierwise_overhead_seconds_sum[5m])) / sum(rate(tierwise_overhead_seconds_count[5m]))",
        "max by (upstream) (tierwise_upstream_up)",
        "sum(rate(tierwise_skips_total[5m])) by (reason)",
        r#"max_over_time(tierwise_in_flight_requests{job="tierwise"}[5m])"#,
    ];
    for expr in good {
        assert_eq!(run(expr), Vec::<String>::new(), "{expr}");
    }
    let bad = [
        ("rate(tierwise_nope_total[5m])", "not in tierwise::metrics::EXPORTED"),
        ("rate(tierwise_requests_total_bucket[5m])", "only histograms have _bucket"),
        ("histogram_quantile(0.5, rate(tierwise_overhead_seconds[5m]))", "is a histogram"),
        ("sum by (model) (rate(tierwise_requests_total[5m]))", "has no label \"model\""),
        ("sum(rate(tierwise_skips_total[5m])) by (verdict)", "has no label \"verdict\""),
        (r#"rate(tierwise_escalations_total{tier="local"}[5m])"#, "has no label \"tier\""),
        ("sum by (le) (rate(tierwise_overhead_seconds_sum[5m]))", "has no label \"le\""),
        ("sum(tierwise_requests_total)", "is cumulative"),
        ("rate(tierwise_upstream_up[5m])", "is a gauge"),
        (r#"tierwise_requests_total / ignoring(model) tierwise_requests_total"#, "has no label \"model\""),
    ];
    for (expr, expected) in bad {
        let problems = run(expr);
        assert!(problems.iter().any(|p| p.contains(expected)), "{expr}: expected \"{expected}\" in {problems:?}");
        assert!(
            problems.iter().all(|p| p.starts_with("panel \"t\": `")),
            "{problems:?} should name the panel and expr"
        );
    }
    let mut problems = Vec::new();
    let lookup = Query {
        place: "variable $x".into(),
        expr: "label_values(tierwise_requests_total, model)".into(),
        lookup: true,
    };
    check(&lookup, &mut problems);
    assert!(problems.iter().any(|p| p.contains("has no label \"model\"")), "{problems:?}");
}

/// The config docker-compose.yml mounts passes tierwise's own validation, and agrees with
/// the Dockerfile's health check and Prometheus's scrape target on the port.
#[test]
fn the_compose_config_is_valid_and_consistent() {
    let toml = repo_file("deploy/tierwise/tierwise.toml");
    // The audit directory is a volume in the container; validation wants it to exist.
    let audit_line = "path = \"/var/lib/tierwise/audit.jsonl\"";
    assert!(toml.contains(audit_line), "deploy/tierwise/tierwise.toml: expected `{audit_line}` in [audit]");
    let dir = std::env::temp_dir().join(format!("tierwise-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let local = toml.replace("/var/lib/tierwise/", &format!("{}/", dir.display()));
    let config = tierwise::config::load_from_str(&local, &|_: &str| None)
        .unwrap_or_else(|e| panic!("deploy/tierwise/tierwise.toml: {e}"));
    let _ = std::fs::remove_dir_all(&dir);

    let port = config.server.listen.port();
    assert!(!config.server.listen.ip().is_loopback(), "in a container tierwise must listen on all interfaces");
    assert!(config.auth.allow_unauthenticated_network || config.auth.required);
    assert_eq!(config.upstreams["local"].base_url.as_str(), "http://llama-swap:8080/v1");
    assert_eq!(config.upstreams["openai"].api_key_env.as_deref(), Some("OPENAI_API_KEY"));

    let dockerfile = repo_file("Dockerfile");
    assert!(dockerfile.contains(&format!("EXPOSE {port}")), "Dockerfile: EXPOSE {port}");
    // The health check asks the port TIERWISE_SERVER__LISTEN names, this one by default.
    assert!(
        dockerfile.contains("port=${TIERWISE_SERVER__LISTEN##*:}")
            && dockerfile.contains(&format!("/dev/tcp/127.0.0.1/${{port:-{port}}}")),
        "Dockerfile: HEALTHCHECK on TIERWISE_SERVER__LISTEN's port, {port} by default"
    );
    assert!(dockerfile.contains(&format!("TIERWISE_SERVER__LISTEN=0.0.0.0:{port}")), "Dockerfile: listen on {port}");
    let prometheus = repo_file("deploy/prometheus/prometheus.yml");
    assert!(prometheus.contains(&format!("\"tierwise:{port}\"")), "prometheus.yml: scrape tierwise:{port}");
    let compose = repo_file("docker-compose.yml");
    assert!(
        compose.contains(&format!("\"127.0.0.1:{port}:{port}\"")),
        "docker-compose.yml: publish {port} on loopback"
    );
}

/// The configs of the compose `scale` profile and of deploy/kubernetes pass tierwise's
/// own validation and keep their rate limits in Redis.
#[test]
fn the_scaled_and_kubernetes_configs_are_valid_and_share_state_in_redis() {
    let dir = std::env::temp_dir().join(format!("tierwise-deploy-scaled-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let env = |name: &str| match name {
        "TIERWISE_REDIS_PASSWORD" | "TIERWISE_CLIENT_KEY" => Some(format!("test-{name}")),
        _ => None,
    };
    for (path, url) in [
        ("deploy/tierwise/tierwise-scaled.toml", "redis://redis:6379/0"),
        ("deploy/kubernetes/tierwise.toml", "redis://redis.tierwise.svc:6379/0"),
    ] {
        let toml = repo_file(path).replace("/var/lib/tierwise/", &format!("{}/", dir.display()));
        let config = tierwise::config::load_from_str(&toml, &env).unwrap_or_else(|e| panic!("{path}: {e}"));
        match &config.state {
            tierwise::config::StateConfig::Redis(redis) => assert_eq!(redis.url, url, "{path}"),
            other => panic!("{path}: [state] is {other:?}, not Redis"),
        }
        assert!(!config.server.listen.ip().is_loopback(), "{path}: a replica listens on all interfaces");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
