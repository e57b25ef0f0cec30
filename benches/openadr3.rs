//! OpenADR 3.1 VTN benchmark: `GET /events` as a VEN with 10,000 events in the store.
//!
//! Run with `cargo bench --bench openadr3`. `SWITCHYARD_BENCH_EVENTS` (default 10,000) sets
//! how many events exist, `SWITCHYARD_BENCH_SECONDS` (default 5) the measured time of each
//! scenario after 1 s of warm-up, `SWITCHYARD_BENCH_CONNECTIONS` (default 32) the keep-alive
//! connections.
//!
//! The server is the real one (`app::start` with the VTN enabled, over a SQLite file in a
//! temporary directory), populated through its own API: one program, VENs in groups
//! `north` and `south`, and events of which half target `north`, a quarter `south` and a
//! quarter no one. The measured VEN is in `north`, so three quarters of the events are
//! visible to it. The load generator (hyper HTTP/1.1 client on its own runtime, in the same
//! process, over 127.0.0.1) sends back-to-back requests with the VEN's bearer token, so
//! every request also verifies an HS256 token. The baseline, measured in the same run with
//! the same load generator, is a bare axum server answering every request with a static
//! copy of the same response body: the ratio to it is what to compare between runs.
//!
//! Part 2 (skip with `SWITCHYARD_BENCH_ONLY=events`): event creation to webhook delivery
//! for `SWITCHYARD_BENCH_SUBSCRIBERS` (default 1,000) VEN clients, each with its own VEN and
//! a subscription to EVENT CREATE pointing at a receiver in this process. Each of 10 rounds
//! creates one untargeted event and times, from just before the BL's POST, the arrival of
//! every subscriber's notification. Baseline: the same number of POSTs of the same body
//! fanned out by one reqwest client (256 at a time) straight to the receiver.

use anyhow::{Context, Result, bail};
use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchyard::app;
use switchyard::config::Config;
use switchyard::protocol::openadr3::PREFIX;
use switchyard::protocol::openadr3::config::{ClientConfig, ClientRole};
use switchyard::registry::Registry;
use switchyard::store::Store;
use tokio::net::TcpStream;

fn env_number(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn token(&self, id: &str, secret: &str) -> Result<String> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
            ])
            .finish();
        let v: Value = self
            .http
            .post(format!("{}/auth/token", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?
            .json()
            .await?;
        Ok(v["access_token"].as_str().context("no token")?.to_string())
    }

    async fn send(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value> {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        let s = r.status();
        let v: Value = r.json().await?;
        if !s.is_success() {
            bail!("{path}: {s} {v}");
        }
        Ok(v)
    }
}

type Sender = SendRequest<Empty<Bytes>>;

async fn dial(addr: SocketAddr) -> Result<Sender> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    path: String,
    token: String,
    expect_len: usize,
}

#[derive(Default)]
struct Worker {
    latencies: Vec<u32>,
    errors: usize,
    first_error: Option<String>,
}

async fn keep_alive(t: Target, measure: Instant, end: Instant) -> Worker {
    let mut w = Worker::default();
    let mut sender: Option<Sender> = None;
    while Instant::now() < end {
        if sender.is_none() {
            match dial(t.addr).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    w.errors += 1;
                    w.first_error.get_or_insert(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let s = sender.as_mut().expect("dialled");
        let started = Instant::now();
        let r = async {
            s.ready().await?;
            let req = Request::get(&t.path)
                .header(header::HOST, "localhost")
                .header(header::AUTHORIZATION, format!("Bearer {}", t.token))
                .body(Empty::new())?;
            let resp = s.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, anyhow::Error>((status, body.len()))
        }
        .await;
        match r {
            Ok((StatusCode::OK, len)) if len == t.expect_len => {
                if started >= measure {
                    w.latencies
                        .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
            }
            Ok((s, len)) => {
                w.errors += 1;
                w.first_error
                    .get_or_insert(format!("{s} with {len} bytes, expected {}", t.expect_len));
            }
            Err(e) => {
                w.errors += 1;
                w.first_error.get_or_insert(format!("{e}"));
                sender = None;
            }
        }
    }
    w
}

struct Row {
    rps: f64,
    p50: f64,
    p99: f64,
    errors: usize,
}

fn load(rt: &tokio::runtime::Runtime, t: &Target, connections: usize, seconds: u64) -> Result<Row> {
    let measure = Instant::now() + Duration::from_secs(1);
    let end = measure + Duration::from_secs(seconds);
    let workers: Vec<Worker> = rt.block_on(async {
        let handles: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(keep_alive(t.clone(), measure, end)))
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.expect("worker"));
        }
        out
    });
    let mut lat: Vec<u32> = workers
        .iter()
        .flat_map(|w| w.latencies.iter().copied())
        .collect();
    let errors = workers.iter().map(|w| w.errors).sum();
    if let Some(e) = workers.iter().find_map(|w| w.first_error.clone()) {
        bail!("{} failed: {e}", t.path);
    }
    lat.sort_unstable();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Ok(Row {
        rps: lat.len() as f64 / seconds as f64,
        p50: q(0.50),
        p99: q(0.99),
        errors,
    })
}

fn main() -> Result<()> {
    let _ = switchyard::protocol::sep2::tls::crypto_provider().install_default();
    let events = env_number("SWITCHYARD_BENCH_EVENTS", 10_000)?;
    let seconds = env_number("SWITCHYARD_BENCH_SECONDS", 5)? as u64;
    let connections = env_number("SWITCHYARD_BENCH_CONNECTIONS", 32)?;

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()?;
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("loadgen")
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}?mode=rwc", dir.path().join("bench.db").display());

    let (server, addr, ven_token, first_page, deep_page) = server_rt.block_on(async {
        let store = Store::open(&url, 8).await?;
        let registry = Registry::open(store).await?;
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse()?;
        config.openadr3.enabled = true;
        config.openadr3.token_secret = "bench-key".into();
        config.openadr3.clients = vec![
            ClientConfig { client_id: "bl".into(), client_secret: "bl".into(), role: ClientRole::Bl },
            ClientConfig { client_id: "ven-n".into(), client_secret: "n".into(), role: ClientRole::Ven },
            ClientConfig { client_id: "ven-s".into(), client_secret: "s".into(), role: ClientRole::Ven },
        ];
        let server = app::start(&config, registry).await?;
        let addr = server.addr;
        let api = Api { http: reqwest::Client::new(), base: format!("http://{addr}{PREFIX}") };
        let bl = api.token("bl", "bl").await?;
        let ven = api.token("ven-n", "n").await?;
        let post = reqwest::Method::POST;
        let program = api.send(&bl, post.clone(), "/programs", json!({"programName": "bench"})).await?;
        for (client, name, group) in [("ven-n", "north-ven", "north"), ("ven-s", "south-ven", "south")] {
            api.send(&bl, post.clone(), "/vens", json!({"objectType": "BL_VEN_REQUEST", "clientID": client, "venName": name, "targets": [group]})).await?;
        }
        let started = Instant::now();
        let chunk = 16;
        for base in (0..events).step_by(chunk) {
            let mut tasks = Vec::new();
            for i in base..(base + chunk).min(events) {
                let targets = match i % 4 {
                    0 | 1 => json!(["north"]),
                    2 => json!(["south"]),
                    _ => Value::Null,
                };
                let mut body = json!({
                    "programID": program["id"], "eventName": format!("event-{i}"),
                    "intervalPeriod": {"start": "2030-06-01T16:00:00Z", "duration": "PT1H"},
                    "intervals": [{"id": 0, "payloads": [{"type": "EXPORT_CAPACITY_LIMIT", "values": [3.5]}]}]
                });
                if !targets.is_null() {
                    body["targets"] = targets;
                }
                let (api_http, base_url, bl) = (api.http.clone(), api.base.clone(), bl.clone());
                tasks.push(tokio::spawn(async move {
                    Api { http: api_http, base: base_url }.send(&bl, reqwest::Method::POST, "/events", body).await
                }));
            }
            for t in tasks {
                t.await??;
            }
        }
        eprintln!("populated {events} events in {:.1} s", started.elapsed().as_secs_f64());
        let get = |path: String| {
            let api = &api;
            let ven = ven.clone();
            async move {
                api.http.get(format!("{}{path}", api.base)).bearer_auth(&ven).send().await?.bytes().await
            }
        };
        let first = get("/events".into()).await?;
        let visible = events * 3 / 4;
        let deep = get(format!("/events?skip={}", visible.saturating_sub(50))).await?;
        Ok::<_, anyhow::Error>((server, addr, ven, first, deep))
    })?;
    let first_len: Vec<Value> = serde_json::from_slice(&first_page)?;
    if first_len.len() != 50 {
        bail!("the first page has {} events, expected 50", first_len.len());
    }

    // The baseline: the same bytes from a bare axum handler.
    let static_body = first_page.clone();
    let (baseline_addr, stop_baseline) = server_rt.block_on(async {
        let app = axum::Router::new().route(
            "/events",
            axum::routing::get(move || {
                let b = static_body.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], b) }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let a = l.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(l, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok::<_, anyhow::Error>((a, tx))
    })?;

    let target = |addr, path: String, len| Target {
        addr,
        path,
        token: ven_token.clone(),
        expect_len: len,
    };
    let scenarios = [
        (
            "baseline: static copy of the page, bare axum",
            target(baseline_addr, "/events".into(), first_page.len()),
        ),
        (
            "GET /events as the VEN (first page of 50)",
            target(addr, format!("{PREFIX}/events"), first_page.len()),
        ),
        (
            "GET /events as the VEN, last page (skip 7450)",
            target(
                addr,
                format!(
                    "{PREFIX}/events?skip={}",
                    (events * 3 / 4).saturating_sub(50)
                ),
                deep_page.len(),
            ),
        ),
    ];
    println!("\n| scenario | requests/s | p50 ms | p99 ms | errors | ratio to baseline |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut base_rps = 0.0;
    for (name, t) in scenarios {
        let r = load(&load_rt, &t, connections, seconds)?;
        if base_rps == 0.0 {
            base_rps = r.rps;
        }
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} | {:.2} |",
            r.rps,
            r.p50,
            r.p99,
            r.errors,
            r.rps / base_rps
        );
    }
    println!(
        "\n{events} events, {connections} keep-alive connections, {seconds} s measured per scenario, page of {} bytes.",
        first_page.len()
    );
    let _ = stop_baseline.send(());
    server_rt.block_on(server.stop())?;
    if std::env::var("SWITCHYARD_BENCH_ONLY").as_deref() != Ok("events") {
        let subscribers = env_number("SWITCHYARD_BENCH_SUBSCRIBERS", 1000)?;
        webhooks(&server_rt, &load_rt, subscribers)?;
    }
    Ok(())
}

fn quantiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    (q(0.5), q(0.99), *v.last().unwrap_or(&0.0))
}

fn webhooks(
    server_rt: &tokio::runtime::Runtime,
    load_rt: &tokio::runtime::Runtime,
    n: usize,
) -> Result<()> {
    use tokio::sync::mpsc;
    let rounds = 10;
    // The receiver: every callback reports (subscriber, event name, arrival).
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let receiver_addr = load_rt.block_on(async {
        let app = axum::Router::new().route(
            "/cb/{i}",
            axum::routing::post(move |body: Bytes| {
                let tx = tx.clone();
                async move {
                    let at = Instant::now();
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let name = v["object"]["eventName"].as_str().unwrap_or("").to_string();
                    let _ = tx.send((name, at));
                    "ok"
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let a = l.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Ok::<_, anyhow::Error>(a)
    })?;

    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}?mode=rwc", dir.path().join("hooks.db").display());
    let (server, api, bl, program) = server_rt.block_on(async {
        let registry = Registry::open(Store::open(&url, 8).await?).await?;
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse()?;
        config.openadr3.enabled = true;
        config.openadr3.token_secret = "bench-key".into();
        config.openadr3.clients = std::iter::once(ClientConfig {
            client_id: "bl".into(),
            client_secret: "bl".into(),
            role: ClientRole::Bl,
        })
        .chain((0..n).map(|i| ClientConfig {
            client_id: format!("ven-{i}"),
            client_secret: "s".into(),
            role: ClientRole::Ven,
        }))
        .collect();
        let server = app::start(&config, registry).await?;
        let api = Api {
            http: reqwest::Client::new(),
            base: format!("http://{}{PREFIX}", server.addr),
        };
        let bl = api.token("bl", "bl").await?;
        let program = api
            .send(
                &bl,
                reqwest::Method::POST,
                "/programs",
                json!({"programName": "hooks"}),
            )
            .await?;
        Ok::<_, anyhow::Error>((server, api, bl, program))
    })?;
    let started = Instant::now();
    load_rt.block_on(async {
        for chunk in (0..n).collect::<Vec<_>>().chunks(32) {
            let mut tasks = Vec::new();
            for &i in chunk {
                let api = Api { http: api.http.clone(), base: api.base.clone() };
                tasks.push(tokio::spawn(async move {
                    let t = api.token(&format!("ven-{i}"), "s").await?;
                    api.send(&t, reqwest::Method::POST, "/vens",
                        json!({"objectType": "VEN_VEN_REQUEST", "venName": format!("v{i}")})).await?;
                    api.send(&t, reqwest::Method::POST, "/subscriptions", json!({
                        "clientName": format!("v{i}"),
                        "objectOperations": [{"objects": ["EVENT"], "operations": ["CREATE"],
                            "callbackUrl": format!("http://{receiver_addr}/cb/{i}"), "bearerToken": "t"}]
                    })).await
                }));
            }
            for t in tasks {
                t.await??;
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    eprintln!(
        "{n} VENs subscribed in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Baseline: the same fan-out straight from one client to the receiver.
    let body = Bytes::from(serde_json::to_vec(
        &json!({"objectType": "EVENT", "operation": "CREATE",
        "object": {"eventName": "baseline", "programID": program["id"]}}),
    )?);
    let mut base_lat = Vec::new();
    for _ in 0..rounds {
        let t0 = Instant::now();
        load_rt.block_on(async {
            let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
            let mut tasks = Vec::new();
            for i in 0..n {
                let (http, body, permits) = (api.http.clone(), body.clone(), permits.clone());
                tasks.push(tokio::spawn(async move {
                    let _p = permits.acquire_owned().await;
                    http.post(format!("http://{receiver_addr}/cb/{i}"))
                        .header("content-type", "application/json")
                        .bearer_auth("t")
                        .body(body)
                        .send()
                        .await
                }));
            }
            for t in tasks {
                t.await??;
            }
            Ok::<_, anyhow::Error>(())
        })?;
        for _ in 0..n {
            let (_, at) = rx.blocking_recv().context("receiver closed")?;
            base_lat.push(at.duration_since(t0).as_secs_f64() * 1000.0);
        }
    }

    let mut lat = Vec::new();
    let mut post_ms = Vec::new();
    for r in 0..rounds {
        let name = format!("round-{r}");
        let t0 = Instant::now();
        server_rt.block_on(api.send(
            &bl,
            reqwest::Method::POST,
            "/events",
            json!({
                "programID": program["id"], "eventName": name,
                "intervalPeriod": {"start": "2030-06-01T16:00:00Z", "duration": "PT1H"},
                "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}]
            }),
        ))?;
        post_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        let mut got = 0;
        while got < n {
            let (ev, at) = rx.blocking_recv().context("receiver closed")?;
            if ev == name {
                got += 1;
                lat.push(at.duration_since(t0).as_secs_f64() * 1000.0);
            }
        }
    }
    let (b50, b99, bmax) = quantiles(base_lat);
    let (l50, l99, lmax) = quantiles(lat);
    let (p50, p99, _) = quantiles(post_ms);
    println!("\n| {n} subscribers, {rounds} rounds | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|");
    println!(
        "| baseline: same fan-out straight to the receiver | {b50:.1} | {b99:.1} | {bmax:.1} |"
    );
    println!("| event creation to webhook arrival | {l50:.1} | {l99:.1} | {lmax:.1} |");
    println!("| POST /events answered | {p50:.1} | {p99:.1} | |");
    server_rt.block_on(server.stop())?;
    Ok(())
}
