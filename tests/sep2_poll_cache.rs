//! The 2030.5 poll path serves rendered documents from memory; these tests hold it to what a
//! device must see: every write through the operator API (a new control, a cancellation, a
//! ramp time, a default, enabling and disabling an EndDevice, a group membership change, the
//! EndDevice's removal, an aggregator losing a device) shows on the very next poll, a control
//! changing status with the clock shows without any write, and a body rendered for one
//! certificate is never served to another. Real mutual TLS, on SQLite and PostgreSQL.

mod common;

use common::TestDb;
use common::sep2::{Pki, Sep2, now, ops_patch, ops_post, pki, start_sep2_server};
use reqwest::{Client, StatusCode};
use serde_json::json;

on_both_backends!(
    writes_show_on_the_next_poll,
    status_changes_show_without_a_write,
    one_certificate_never_gets_another_ones_body
);

/// An account, site `s{n}` (feeder F1) and a 5 kW battery `d{n}`, with a program `p{n}`
/// targeting the site.
async fn site_with_program(ops: &str, n: u32) {
    ops_post(
        ops,
        "/api/v1/accounts",
        json!({"id": format!("a{n}"), "account_number": format!("A{n}"), "name": "A", "kind": "residential"}),
    )
    .await;
    ops_post(
        ops,
        "/api/v1/sites",
        json!({"id": format!("s{n}"), "account_id": format!("a{n}"), "connection_point_id": format!("410200000{n}"), "territory": "T", "interconnection_type": "nem", "grid_location": {"feeder": "F1"}}),
    )
    .await;
    ops_post(ops, "/api/v1/ders", json!({"id": format!("d{n}"), "site_id": format!("s{n}"), "der_class": "battery", "manufacturer": "M", "model": "B", "serial": format!("{n}"), "rated_kw": 5.0, "storage_kwh": 10.0, "status": "active"})).await;
    ops_post(
        ops,
        "/api/v1/control-programs",
        json!({"id": format!("p{n}"), "name": format!("Program {n}"), "primacy": 1, "target_kind": "site", "target_id": format!("s{n}")}),
    )
    .await;
}

/// Creates the EndDevice of `cert` out of band, bound to DER `der`; returns its id.
async fn end_device(ops: &str, cert: &str, der: &str, owner: Option<String>) -> String {
    let ed = ops_post(
        ops,
        "/api/v1/end-devices",
        json!({"certificate_pem": cert, "der_id": der, "owner_lfdi": owner}),
    )
    .await;
    ed["id"].as_str().unwrap().to_string()
}

async fn control(ops: &str, program: &str, start: i64, duration_s: u32, w: f64) -> String {
    let c = ops_post(
        ops,
        "/api/v1/controls",
        json!({"program_id": program, "start": start, "duration_s": duration_s, "modes": {"exp_lim_w": w}}),
    )
    .await;
    c["id"].as_str().unwrap().to_string()
}

/// The `currentStatus` values of a DERControlList, in document order.
fn statuses(doc: &str) -> Vec<u8> {
    doc.split("<currentStatus>")
        .skip(1)
        .map(|s| s[..s.find('<').unwrap()].parse().unwrap())
        .collect()
}

async fn writes_show_on_the_next_poll(db: TestDb) {
    let pki: Pki = pki();
    let (server, base, ops) = start_sep2_server(&db, &pki).await;
    site_with_program(&ops, 1).await;
    let c1 = control(&ops, "p1", now() - 60, 3600, 1500.0).await;
    let id = end_device(&ops, &pki.device.cert_pem, "d1", None).await;
    let dev = Sep2::new(&pki, &pki.device, &base);
    let derc = format!("/edev/{id}/derp/p1/derc?l=10");
    let derp = format!("/edev/{id}/derp?l=10");

    let (s, first) = dev.get(&derc).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert!(first.contains("all=\"1\""), "{first}");
    assert_eq!(statuses(&first), vec![1]);
    let (_, again) = dev.get(&derc).await;
    assert_eq!(
        again, first,
        "a repeated poll is answered with the same document"
    );

    // A new control.
    control(&ops, "p1", now() + 3600, 600, 2000.0).await;
    let (_, doc) = dev.get(&derc).await;
    assert!(
        doc.contains("all=\"2\""),
        "the new control is listed: {doc}"
    );
    assert_eq!(statuses(&doc), vec![0, 1]);

    // A cancellation.
    let r = Client::new()
        .post(format!("{ops}/api/v1/controls/{c1}/cancel"))
        .bearer_auth(common::OPERATOR_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, doc) = dev.get(&derc).await;
    assert_eq!(
        statuses(&doc),
        vec![0, 2],
        "the cancellation is seen: {doc}"
    );
    let (_, active) = dev.get(&format!("/edev/{id}/derp/p1/actderc?l=10")).await;
    assert!(active.contains("all=\"0\""), "{active}");

    // A ramp time goes out as rampTms (hundredths of a second); one that rampTms cannot
    // carry is refused and nothing is stored.
    let r = Client::new()
        .post(format!("{ops}/api/v1/controls"))
        .bearer_auth(common::OPERATOR_TOKEN)
        .json(&json!({"program_id": "p1", "start": now() + 7200, "duration_s": 600, "modes": {"exp_lim_w": 1000.0, "ramp_s": 700.0}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert!(r.text().await.unwrap().contains("ramp_s"));
    let (_, doc) = dev.get(&derc).await;
    assert!(doc.contains("all=\"2\""), "nothing stored: {doc}");
    assert!(!doc.contains("rampTms"), "{doc}");
    ops_post(
        &ops,
        "/api/v1/controls",
        json!({"program_id": "p1", "start": now() + 7200, "duration_s": 600, "modes": {"exp_lim_w": 1000.0, "ramp_s": 30.0}}),
    )
    .await;
    let (_, doc) = dev.get(&derc).await;
    assert!(doc.contains("all=\"3\""), "{doc}");
    assert!(doc.contains("<rampTms>3000</rampTms>"), "{doc}");

    // A default control appears, then changes.
    let (s, _) = dev.get(&format!("/edev/{id}/derp/p1/dderc")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    ops_post(
        &ops,
        "/api/v1/default-controls",
        json!({"program_id": "p1", "modes": {"exp_lim_w": 5000.0}}),
    )
    .await;
    let (s, dderc) = dev.get(&format!("/edev/{id}/derp/p1/dderc")).await;
    assert_eq!(s, StatusCode::OK, "the 404 was not remembered");
    assert!(dderc.contains("<value>5000</value>"), "{dderc}");
    ops_patch(
        &ops,
        "/api/v1/default-controls/p1",
        json!({"modes": {"exp_lim_w": 4000.0}}),
    )
    .await;
    let (_, dderc) = dev.get(&format!("/edev/{id}/derp/p1/dderc")).await;
    assert!(dderc.contains("<value>4000</value>"), "{dderc}");

    // Group membership: a program for feeder F2 reaches the DER once its site moves there.
    let group = ops_post(
        &ops,
        "/api/v1/groups",
        json!({"name": "Feeder F2", "grid_location": {"feeder": "F2"}}),
    )
    .await;
    ops_post(
        &ops,
        "/api/v1/control-programs",
        json!({"id": "f2", "name": "Feeder F2", "primacy": 2, "target_kind": "group", "target_id": group["id"]}),
    )
    .await;
    let (_, programs) = dev.get(&derp).await;
    assert!(
        programs.contains("all=\"1\""),
        "not a member yet: {programs}"
    );
    let (s, _) = dev.get(&format!("/edev/{id}/derp/f2/derc?l=10")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    ops_patch(
        &ops,
        "/api/v1/sites/s1",
        json!({"grid_location": {"feeder": "F2"}}),
    )
    .await;
    let (_, programs) = dev.get(&derp).await;
    assert!(programs.contains("all=\"2\""), "now a member: {programs}");
    let (s, _) = dev.get(&format!("/edev/{id}/derp/f2/derc?l=10")).await;
    assert_eq!(s, StatusCode::OK);
    let (_, fsa) = dev.get(&format!("/edev/{id}/fsa/1")).await;
    assert!(fsa.contains("all=\"2\""), "{fsa}");
    ops_patch(
        &ops,
        "/api/v1/sites/s1",
        json!({"grid_location": {"feeder": "F1"}}),
    )
    .await;
    let (s, _) = dev.get(&format!("/edev/{id}/derp/f2/derc?l=10")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "membership withdrawn");

    // Disabling and enabling the EndDevice.
    let (_, before) = dev.get(&derc).await;
    ops_patch(
        &ops,
        &format!("/api/v1/end-devices/{id}"),
        json!({"enabled": false}),
    )
    .await;
    let (s, _) = dev.get(&derc).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "disabled at once");
    let (s, _) = dev.get(&derp).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    ops_patch(
        &ops,
        &format!("/api/v1/end-devices/{id}"),
        json!({"enabled": true}),
    )
    .await;
    let (s, after) = dev.get(&derc).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(after, before);

    // Unbinding the DER takes the programs away; removing the EndDevice revokes access.
    ops_patch(
        &ops,
        &format!("/api/v1/end-devices/{id}"),
        json!({"der_id": null}),
    )
    .await;
    let (s, _) = dev.get(&derc).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let r = Client::new()
        .delete(format!("{ops}/api/v1/end-devices/{id}"))
        .bearer_auth(common::OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (s, _) = dev.get(&derp).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "access revoked at once");
    server.stop().await.unwrap();
}

async fn status_changes_show_without_a_write(db: TestDb) {
    let pki: Pki = pki();
    let (server, base, ops) = start_sep2_server(&db, &pki).await;
    site_with_program(&ops, 1).await;
    let start = now() + 2;
    control(&ops, "p1", start, 2, 1500.0).await;
    let id = end_device(&ops, &pki.device.cert_pem, "d1", None).await;
    let dev = Sep2::new(&pki, &pki.device, &base);
    let derc = format!("/edev/{id}/derp/p1/derc?l=10");
    let actderc = format!("/edev/{id}/derp/p1/actderc?l=10");

    let (_, doc) = dev.get(&derc).await;
    assert_eq!(statuses(&doc), vec![0], "scheduled: {doc}");
    let (_, active) = dev.get(&actderc).await;
    assert!(active.contains("all=\"0\""), "{active}");
    wait_until(start).await;
    let (_, doc) = dev.get(&derc).await;
    assert_eq!(statuses(&doc), vec![1], "active from its start: {doc}");
    let (_, active) = dev.get(&actderc).await;
    assert!(active.contains("all=\"1\""), "{active}");
    wait_until(start + 2).await;
    let (_, doc) = dev.get(&derc).await;
    assert!(
        doc.contains("all=\"0\""),
        "completed, no longer listed: {doc}"
    );
    server.stop().await.unwrap();
}

/// Sleeps until the wall clock reaches `t` (epoch seconds).
async fn wait_until(t: i64) {
    while now() < t {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn one_certificate_never_gets_another_ones_body(db: TestDb) {
    let pki: Pki = pki();
    let (server, base, ops) = start_sep2_server(&db, &pki).await;
    site_with_program(&ops, 1).await;
    site_with_program(&ops, 2).await;
    control(&ops, "p1", now() - 60, 3600, 1500.0).await;
    control(&ops, "p2", now() - 60, 3600, 2500.0).await;
    let mine = end_device(&ops, &pki.device.cert_pem, "d1", None).await;
    let agg_lfdi = pki.aggregator.lfdi.to_hex();
    ops_post(
        &ops,
        "/api/v1/identities",
        json!({"kind": "aggregator", "certificate_pem": pki.aggregator.cert_pem}),
    )
    .await;
    let theirs = end_device(&ops, &pki.other.cert_pem, "d2", Some(agg_lfdi)).await;
    let dev = Sep2::new(&pki, &pki.device, &base);
    let other = Sep2::new(&pki, &pki.other, &base);
    let agg = Sep2::new(&pki, &pki.aggregator, &base);
    let mine_derc = format!("/edev/{mine}/derp/p1/derc?l=10");
    let theirs_derc = format!("/edev/{theirs}/derp/p2/derc?l=10");

    // Each document is rendered and cached for its own caller first.
    for _ in 0..3 {
        let (s, doc) = dev.get(&mine_derc).await;
        assert_eq!(s, StatusCode::OK);
        assert!(doc.contains("<value>15000</value>"), "{doc}");
        let (s, doc) = other.get(&theirs_derc).await;
        assert_eq!(s, StatusCode::OK);
        assert!(doc.contains("<value>25000</value>"), "{doc}");
    }
    // The same paths from the wrong certificates: 404, every time.
    for _ in 0..3 {
        let (s, body) = other.get(&mine_derc).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
        let (s, _) = other.get(&format!("/edev/{mine}/derp?l=10")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = dev.get(&theirs_derc).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = agg.get(&mine_derc).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    // The aggregator sees the device it owns, until it no longer owns it.
    let (s, doc) = agg.get(&theirs_derc).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc.contains("<value>25000</value>"), "{doc}");
    ops_patch(
        &ops,
        &format!("/api/v1/end-devices/{theirs}"),
        json!({"owner_lfdi": null}),
    )
    .await;
    let (s, _) = agg.get(&theirs_derc).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "ownership withdrawn at once");
    let (s, _) = other.get(&theirs_derc).await;
    assert_eq!(s, StatusCode::OK, "the device itself still sees it");
    server.stop().await.unwrap();
}
