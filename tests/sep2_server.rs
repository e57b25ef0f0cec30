//! The IEEE 2030.5 server as a device and an aggregator meet it: a full client cycle over
//! real mutual TLS (discover, register, read programs, controls and defaults, write DER
//! information), every served document validated against the official CSIP-AUS schema, and
//! the refusals: other parties' resources, wrong LFDIs, entity declarations, oversized
//! bodies, wrong content types, disabled devices and certificates the server must not
//! accept; and a deployment that registers out of band only. Runs on SQLite and PostgreSQL.

mod common;

use common::sep2::{Pki, Sep2, client, href_of, ops_post, pki, registration, start_sep2_server};
use common::xsd::{schemas, validate};
use common::{OPERATOR_TOKEN, TestDb, start_server_with};
use reqwest::{Client, StatusCode};
use serde_json::json;
use switchyard::pki::{CertKind, CertificateAuthority, IssueRequest};
use switchyard::protocol::sep2::xml::CsipAusVersion;

on_both_backends!(
    device_client_cycle_over_mutual_tls,
    refusals_change_nothing,
    out_of_band_only_refuses_in_band_registration
);

const SETTINGS: &str = "<DERSettings xmlns=\"urn:ieee:std:2030.5:ns\" xmlns:csipaus=\"https://csipaus.org/ns/v1.3\"><setGradW>100</setGradW><setMaxW><multiplier>0</multiplier><value>5000</value></setMaxW><updatedTime>1900000000</updatedTime></DERSettings>";
const STATUS: &str = "<DERStatus xmlns=\"urn:ieee:std:2030.5:ns\"><readingTime>1900000000</readingTime><stateOfChargeStatus><dateTime>1900000000</dateTime><value>55</value></stateOfChargeStatus></DERStatus>";

async fn setup(db: &TestDb, pki: &Pki) -> (switchyard::app::RunningServer, String, Client) {
    let (server, sep2_base, base) = start_sep2_server(db, pki).await;
    let ops = Client::new();
    let post = |path: &'static str, body: serde_json::Value| {
        let base = base.clone();
        async move {
            ops_post(&base, path, body).await;
        }
    };
    post(
        "/api/v1/accounts",
        json!({"id": "a1", "account_number": "A1", "name": "A", "kind": "residential"}),
    )
    .await;
    post(
        "/api/v1/sites",
        json!({"id": "s1", "account_id": "a1", "connection_point_id": "4102000001", "territory": "T", "interconnection_type": "nem"}),
    )
    .await;
    post("/api/v1/ders", json!({"id": "d1", "site_id": "s1", "der_class": "battery", "manufacturer": "M", "model": "B", "serial": "1", "rated_kw": 5.0, "storage_kwh": 10.0, "status": "active"})).await;
    post(
        "/api/v1/identities",
        json!({"kind": "aggregator", "certificate_pem": pki.aggregator.cert_pem}),
    )
    .await;
    post(
        "/api/v1/control-programs",
        json!({"id": "doe", "name": "DOE", "primacy": 1, "target_kind": "site", "target_id": "s1"}),
    )
    .await;
    post(
        "/api/v1/default-controls",
        json!({"program_id": "doe", "modes": {"exp_lim_w": 5000.0}}),
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    post("/api/v1/controls", json!({"program_id": "doe", "start": now - 60, "duration_s": 3600, "modes": {"exp_lim_w": 1500.0, "max_lim_w": 2500.0}})).await;
    (server, sep2_base, ops)
}

async fn device_client_cycle_over_mutual_tls(db: TestDb) {
    let pki = pki();
    let (server, base, ops) = setup(&db, &pki).await;
    let dev = Sep2 {
        http: client(pki.ca.cert_pem(), &pki.device),
        base: base.clone(),
        docs: Default::default(),
    };

    // Discover: the device is not registered yet.
    let (s, dcap) = dev.get("/dcap").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(href_of(&dcap, "EndDeviceListLink"), "/edev");
    assert!(dcap.contains("all=\"0\""), "{dcap}");
    let (s, _) = dev.get("/tm").await;
    assert_eq!(s, StatusCode::OK);

    // Register in-band with its own LFDI; registering again is refused and no duplicate appears.
    let resp = dev
        .send(
            reqwest::Method::POST,
            "/edev",
            "application/sep+xml",
            registration(&pki.device.lfdi),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(location, format!("/edev/{}", pki.device.sfdi.value()));
    let again = dev
        .send(
            reqwest::Method::POST,
            "/edev",
            "application/sep+xml",
            registration(&pki.device.lfdi),
        )
        .await;
    assert_eq!(
        again.status(),
        StatusCode::CONFLICT,
        "a repeated registration is refused"
    );
    assert_eq!(again.headers()["location"].to_str().unwrap(), location);
    let (_, list) = dev.get("/edev?l=10").await;
    assert!(list.contains("all=\"1\" results=\"1\""), "{list}");
    assert!(list.contains(&format!("<lFDI>{}</lFDI>", pki.device.lfdi.to_hex())));

    // The device reports its connection point (CSIP-AUS); that binds it to the site with
    // that NMI, whose envelope program it then finds. It also describes itself.
    let (_, edev) = dev.get(&location).await;
    let (s, _) = dev
        .get(href_of(&edev, "FunctionSetAssignmentsListLink"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let cp = href_of(&edev, "csipaus:ConnectionPointLink").to_string();
    let r = dev.send(reqwest::Method::PUT, &cp, "application/sep+xml", "<csipaus:ConnectionPoint xmlns:csipaus=\"https://csipaus.org/ns/v1.3\" xmlns=\"urn:ieee:std:2030.5:ns\"><csipaus:connectionPointId>4102000001</csipaus:connectionPointId></csipaus:ConnectionPoint>".into()).await;
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "{}",
        r.text().await.unwrap()
    );
    let (_, cp_doc) = dev.get(&cp).await;
    assert!(cp_doc.contains("4102000001"), "{cp_doc}");
    let (_, derp_list) = dev.get(&format!("{location}/derp?l=10")).await;
    assert!(
        derp_list.contains("all=\"1\""),
        "bound through the NMI: {derp_list}"
    );
    let di = href_of(&edev, "DeviceInformationLink").to_string();
    let info = format!(
        "<DeviceInformation xmlns=\"urn:ieee:std:2030.5:ns\"><lFDI>{}</lFDI><mfDate>1700000000</mfDate><mfHwVer>1.0</mfHwVer><mfID>37250</mfID><mfModel>B10</mfModel><mfSerNum>SN1</mfSerNum><primaryPower>0</primaryPower><secondaryPower>0</secondaryPower><swActTime>1700000000</swActTime><swVer>2.1</swVer></DeviceInformation>",
        pki.device.lfdi.to_hex()
    );
    let r = dev
        .send(
            reqwest::Method::PUT,
            &di,
            "application/sep+xml",
            info.clone(),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "{}",
        r.text().await.unwrap()
    );
    let (_, di_doc) = dev.get(&di).await;
    assert!(di_doc.contains("<mfModel>B10</mfModel>"), "{di_doc}");
    let foreign = info.replace(&pki.device.lfdi.to_hex(), &pki.other.lfdi.to_hex());
    let r = dev
        .send(reqwest::Method::PUT, &di, "application/sep+xml", foreign)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (s, _) = dev
        .get(&format!("{}?l=10", href_of(&edev, "LogEventListLink")))
        .await;
    assert_eq!(s, StatusCode::OK);

    // The utility binds the EndDevice to its DER; the device then finds its programs.
    let r = ops
        .patch(format!(
            "http://{}/api/v1/end-devices/{}",
            server.addr,
            pki.device.sfdi.value()
        ))
        .bearer_auth(OPERATOR_TOKEN)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"der_id": "d1", "pin": 111115}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let (_, edev) = dev.get(&location).await;
    let (_, rg) = dev.get(href_of(&edev, "RegistrationLink")).await;
    assert!(rg.contains("<pIN>111115</pIN>"), "{rg}");
    let (_, fsa_list) = dev
        .get(&format!(
            "{}?l=10",
            href_of(&edev, "FunctionSetAssignmentsListLink")
        ))
        .await;
    let (_, derp_list) = dev
        .get(&format!(
            "{}?l=10",
            href_of(&fsa_list, "DERProgramListLink")
        ))
        .await;
    assert!(derp_list.contains("<primacy>1</primacy>"), "{derp_list}");
    let program = href_of(&derp_list, "DERProgram").to_string();
    let (_, derp) = dev.get(&program).await;
    let (_, derc) = dev
        .get(&format!("{}?l=10", href_of(&derp, "DERControlListLink")))
        .await;
    // The DOE in force: 1500 W export limit as 15000 x 10^-1, max 50.00 % of the 5 kW rating.
    assert!(derc.contains("<currentStatus>1</currentStatus>"), "{derc}");
    assert!(derc.contains("<csipaus:opModExpLimW><multiplier>-1</multiplier><value>15000</value></csipaus:opModExpLimW>"), "{derc}");
    assert!(derc.contains("<opModMaxLimW>5000</opModMaxLimW>"), "{derc}");
    let (_, actderc) = dev
        .get(&format!(
            "{}?l=10",
            href_of(&derp, "ActiveDERControlListLink")
        ))
        .await;
    assert!(actderc.contains("results=\"1\""), "{actderc}");
    let control = href_of(&derc, "DERControl").to_string();
    let (s, _) = dev.get(&control).await;
    assert_eq!(s, StatusCode::OK);
    let (_, dderc) = dev.get(href_of(&derp, "DefaultDERControlLink")).await;
    assert!(dderc.contains("<value>5000</value>"), "{dderc}");
    let (_, _) = dev.get(href_of(&derp, "DERCurveListLink")).await;

    // DER information written by the device is stored and served back.
    let (_, der_list) = dev
        .get(&format!("{}?l=10", href_of(&edev, "DERListLink")))
        .await;
    let der = href_of(&der_list, "DER").to_string();
    let (_, der_doc) = dev.get(&der).await;
    let settings = href_of(&der_doc, "DERSettingsLink").to_string();
    let status = href_of(&der_doc, "DERStatusLink").to_string();
    let (s, _) = dev.get(&settings).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing written yet");
    let r = dev
        .send(
            reqwest::Method::PUT,
            &settings,
            "application/sep+xml",
            SETTINGS.into(),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "{}",
        r.text().await.unwrap()
    );
    let r = dev
        .send(
            reqwest::Method::PUT,
            &status,
            "application/sep+xml",
            STATUS.into(),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "{}",
        r.text().await.unwrap()
    );
    let (_, back) = dev.get(&settings).await;
    assert!(back.contains("<setGradW>100</setGradW>"), "{back}");
    let (_, back) = dev.get(&status).await;
    assert!(back.contains("<value>55</value>"), "{back}");

    // Another device's certificate sees none of it, and HEAD works on every GET.
    let other = Sep2 {
        http: client(pki.ca.cert_pem(), &pki.other),
        base: base.clone(),
        docs: Default::default(),
    };
    for path in [location.as_str(), program.as_str(), settings.as_str()] {
        let (s, _) = other.get(path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let head = dev
        .http
        .head(format!("{base}{control}"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);

    // Every document served above is valid CSIP-AUS v1.3.
    if let Some(schemas) = schemas() {
        let docs = std::mem::take(&mut *dev.docs.lock().unwrap());
        assert!(docs.len() >= 21, "{} documents", docs.len());
        validate(
            &schemas,
            schemas.csipaus(CsipAusVersion::V1_3),
            "served",
            &docs,
        );
    }
    server.stop().await.unwrap();
}

async fn refusals_change_nothing(db: TestDb) {
    let pki = pki();
    let (server, base, ops) = setup(&db, &pki).await;
    let dev = Sep2 {
        http: client(pki.ca.cert_pem(), &pki.device),
        base: base.clone(),
        docs: Default::default(),
    };
    let post = |body: String, ct: &'static str| dev.send(reqwest::Method::POST, "/edev", ct, body);

    // A device may register only its own LFDI.
    let r = post(registration(&pki.other.lfdi), "application/sep+xml").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // An sFDI that does not belong to the lFDI, a malformed LFDI, schema-invalid XML.
    let wrong_sfdi =
        registration(&pki.device.lfdi).replace(&pki.device.sfdi.value().to_string(), "12345");
    assert_eq!(
        post(wrong_sfdi, "application/sep+xml").await.status(),
        StatusCode::BAD_REQUEST
    );
    let bad_lfdi = registration(&pki.device.lfdi).replace(&pki.device.lfdi.to_hex(), "XYZ");
    assert_eq!(
        post(bad_lfdi, "application/sep+xml").await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(
            "<EndDevice xmlns=\"urn:ieee:std:2030.5:ns\"><sFDI>".into(),
            "application/sep+xml"
        )
        .await
        .status(),
        StatusCode::BAD_REQUEST
    );
    // Entity declarations are refused without expansion.
    let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]><EndDevice xmlns=\"urn:ieee:std:2030.5:ns\"><sFDI>&lol2;</sFDI><changedTime>0</changedTime></EndDevice>";
    assert_eq!(
        post(laughs.into(), "application/sep+xml").await.status(),
        StatusCode::BAD_REQUEST
    );
    // Oversized bodies and wrong content types.
    let big = format!(
        "<EndDevice xmlns=\"urn:ieee:std:2030.5:ns\"><!-- {} --></EndDevice>",
        "x".repeat(8000)
    );
    assert_eq!(
        post(big, "application/sep+xml").await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        post(registration(&pki.device.lfdi), "application/json")
            .await
            .status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // None of that registered anything.
    let (_, list) = dev.get("/edev?l=10").await;
    assert!(list.contains("all=\"0\""), "{list}");

    // An aggregator registers a device it manages; the device's own certificate does not
    // see the aggregator's registration, and the aggregator cannot see unrelated devices.
    let agg = Sep2 {
        http: client(pki.ca.cert_pem(), &pki.aggregator),
        base: base.clone(),
        docs: Default::default(),
    };
    let r = agg
        .send(
            reqwest::Method::POST,
            "/edev",
            "application/sep+xml",
            registration(&pki.other.lfdi),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let managed = r.headers()["location"].to_str().unwrap().to_string();
    let (_, agg_list) = agg.get("/edev?l=10").await;
    assert!(agg_list.contains("all=\"1\""), "{agg_list}");
    let (s, _) = dev.get(&managed).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The device registers; schema-invalid DER settings are refused and nothing is stored.
    let r = post(registration(&pki.device.lfdi), "application/sep+xml").await;
    let own = r.headers()["location"].to_str().unwrap().to_string();
    let settings = format!("{own}/der/1/derg");
    let incomplete =
        "<DERSettings xmlns=\"urn:ieee:std:2030.5:ns\"><setGradW>100</setGradW></DERSettings>";
    let r = dev
        .send(
            reqwest::Method::PUT,
            &settings,
            "application/sep+xml",
            incomplete.into(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(dev.get(&settings).await.0, StatusCode::NOT_FOUND);
    // Writes to another party's resources are 404.
    let r = dev
        .send(
            reqwest::Method::PUT,
            &format!("{managed}/der/1/derg"),
            "application/sep+xml",
            SETTINGS.into(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The operator disables the device: its programs are refused.
    let r = ops
        .patch(format!(
            "http://{}/api/v1/end-devices/{}",
            server.addr,
            pki.device.sfdi.value()
        ))
        .bearer_auth(OPERATOR_TOKEN)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"enabled": false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        dev.get(&format!("{own}/fsa")).await.0,
        StatusCode::FORBIDDEN
    );

    // Certificates the server must not accept fail at the handshake.
    let mut expired_req = IssueRequest::new(CertKind::Device, "expired");
    expired_req.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    expired_req.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let expired = pki.ca.issue(&expired_req).unwrap();
    let stranger_ca = CertificateAuthority::generate("Someone else").unwrap();
    let stranger = stranger_ca
        .issue(&IssueRequest::new(CertKind::Device, "stranger"))
        .unwrap();
    for (name, cert) in [("expired", &expired), ("unknown CA", &stranger)] {
        let c = client(pki.ca.cert_pem(), cert);
        let result = c.get(format!("{base}/dcap")).send().await;
        assert!(result.is_err(), "{name} certificate was accepted");
    }
    server.stop().await.unwrap();
}

/// `sep2.in_band_registration = false`: POST /edev is refused with 403 whether or not the
/// EndDevice exists, nothing is created, and the EndDevice the operator registers serves
/// as usual.
async fn out_of_band_only_refuses_in_band_registration(db: TestDb) {
    let pki = pki();
    let (server, ops) = start_server_with(&db, 64 * 1024, |c| {
        c.sep2.enabled = true;
        c.sep2.listen = "127.0.0.1:0".parse().unwrap();
        c.sep2.ca_cert = pki.dir.path().join("ca.pem");
        c.sep2.server_cert = pki.dir.path().join("server.pem");
        c.sep2.server_key = pki.dir.path().join("server.key");
        c.sep2.in_band_registration = false;
    })
    .await;
    let base = format!("https://127.0.0.1:{}", server.sep2_addr.unwrap().port());
    let dev = Sep2::new(&pki, &pki.device, &base);
    let lfdi = pki.device.lfdi.to_hex();

    let r = dev.post("/edev", registration(&pki.device.lfdi)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("out of band"));
    let (s, list) = dev.get("/edev").await;
    assert_eq!(s, StatusCode::OK);
    assert!(list.contains("all=\"0\""), "nothing registered: {list}");

    ops_post(&ops, "/api/v1/end-devices", json!({"lfdi": lfdi})).await;
    let (_, list) = dev.get("/edev").await;
    assert!(list.contains("all=\"1\"") && list.contains(&lfdi), "{list}");
    let r = dev.post("/edev", registration(&pki.device.lfdi)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, after) = dev.get("/edev").await;
    assert_eq!(after, list, "the refused registration changed nothing");

    if let Some(schemas) = schemas() {
        validate(
            &schemas,
            schemas.csipaus(CsipAusVersion::V1_3),
            "out of band only",
            &dev.take_docs(),
        );
    }
    server.stop().await.unwrap();
}
