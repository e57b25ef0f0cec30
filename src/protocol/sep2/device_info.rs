//! The documents an EndDevice writes about itself: DeviceInformation, the CSIP-AUS
//! ConnectionPoint (which carries the site's NMI and so links the device to its site in
//! the registry). Its LogEventList is [`super::log_events`].

use super::model::{ConnectionPoint, DeviceInformation};
use super::records::{DerResource, EndDeviceRecord, get_der_resource, put_der_resource};
use super::server::{
    Result, SEP_XML, Sep2Error, Sep2State, body_bytes, caller, enabled_end_device, read_xml, xml,
};
use super::tls::PeerIdentity;
use super::xml as codec;
use crate::domain::now_epoch;
use crate::registry::model::Site;
use crate::store::Value;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

/// Routes of this function set.
pub fn routes() -> Router<Sep2State> {
    Router::new()
        .route("/edev/{edev}/di", get(get_di).put(put_di))
        .route("/edev/{edev}/cp", get(get_cp).put(put_cp))
}

async fn get_di(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
) -> Result<Response> {
    let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
    stored(&state, &ed, DerResource::DeviceInformation).await
}

async fn put_di(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
    let bytes = body_bytes(&state, body).await?;
    let mut doc: DeviceInformation = read_xml(&state, &headers, &bytes)?;
    if !doc.l_fdi.eq_ignore_ascii_case(&ed.lfdi) {
        return Err(Sep2Error::BadRequest(format!(
            "lFDI {} is not this EndDevice's ({})",
            doc.l_fdi, ed.lfdi
        )));
    }
    doc.href = Some(format!("/edev/{}/di", ed.id));
    store(&state, &ed, DerResource::DeviceInformation, &doc).await
}

async fn get_cp(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
) -> Result<Response> {
    let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
    if let Some(body) =
        get_der_resource(state.registry.store(), &ed.id, DerResource::ConnectionPoint).await?
    {
        return Ok(([(header::CONTENT_TYPE, SEP_XML)], body).into_response());
    }
    // Not written by the device: the registry may know the site's NMI already.
    let site_id = match (&ed.site_id, &ed.der_id) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(d)) => Some(
            state
                .registry
                .get::<crate::registry::model::Der>(d)
                .await?
                .site_id,
        ),
        (None, None) => None,
    };
    let Some(site_id) = site_id else {
        return Err(Sep2Error::NotFound);
    };
    let site: Site = state.registry.get(&site_id).await?;
    let Some(nmi) = site.connection_point_id else {
        return Err(Sep2Error::NotFound);
    };
    xml(
        &state,
        &ConnectionPoint {
            href: Some(format!("/edev/{}/cp", ed.id)),
            connection_point_id: nmi,
        },
    )
}

/// A device reports its connection point (NMI). When the registry has a site with that
/// connection point and the EndDevice is not yet bound to anything, the EndDevice is bound
/// to that site, so the site's envelopes reach it.
async fn put_cp(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
    let bytes = body_bytes(&state, body).await?;
    let mut doc: ConnectionPoint = read_xml(&state, &headers, &bytes)?;
    let nmi = doc.connection_point_id.trim().to_string();
    if nmi.is_empty() || nmi.len() > 32 || !nmi.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Sep2Error::BadRequest(
            "connectionPointId must be 1-32 letters and digits".into(),
        ));
    }
    if state.settings.csipaus.is_some() && !is_nmi(&nmi) {
        return Err(Sep2Error::BadRequest(format!(
            "connectionPointId '{nmi}' is not an NMI (10 characters of A-Z without I and O, or \
             digits, optionally followed by a checksum digit)"
        )));
    }
    doc.connection_point_id = nmi.clone();
    doc.href = Some(format!("/edev/{}/cp", ed.id));
    if ed.der_id.is_none() && ed.site_id.is_none() {
        let sites = state
            .registry
            .list::<Site>(&[("connection_point_id", Value::Text(Some(nmi)))], None, 1)
            .await?;
        if let Some(site) = sites.items.first() {
            let site_id = site.id.clone();
            state
                .registry
                .update::<EndDeviceRecord, _>(&ed.id, |e| {
                    let mut e = e.clone();
                    e.site_id = Some(site_id.clone());
                    Ok(e)
                })
                .await?;
        }
    }
    store(&state, &ed, DerResource::ConnectionPoint, &doc).await
}

/// Whether `s` has the shape of an Australian National Metering Identifier: ten characters
/// from A-Z (I and O are never used, to avoid confusion with 1 and 0) and 0-9, optionally
/// followed by its one-digit checksum.
fn is_nmi(s: &str) -> bool {
    let b = s.as_bytes();
    let body_ok =
        |c: &u8| c.is_ascii_digit() || (c.is_ascii_uppercase() && *c != b'I' && *c != b'O');
    match b.len() {
        10 => b.iter().all(body_ok),
        11 => b[..10].iter().all(body_ok) && b[10].is_ascii_digit(),
        _ => false,
    }
}

async fn stored(state: &Sep2State, ed: &EndDeviceRecord, kind: DerResource) -> Result<Response> {
    match get_der_resource(state.registry.store(), &ed.id, kind).await? {
        Some(body) => Ok(([(header::CONTENT_TYPE, SEP_XML)], body).into_response()),
        None => Err(Sep2Error::NotFound),
    }
}

async fn store<T>(
    state: &Sep2State,
    ed: &EndDeviceRecord,
    kind: DerResource,
    doc: &T,
) -> Result<Response>
where
    T: super::model::SepResource + serde::Serialize,
{
    let canonical = codec::encode(doc, state.settings.csipaus)
        .map_err(|e| Sep2Error::BadRequest(e.to_string()))?;
    put_der_resource(
        state.registry.store(),
        &ed.id,
        kind,
        &canonical,
        now_epoch(),
        &[],
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn nmi_shape() {
        assert!(super::is_nmi("4102000001"));
        assert!(super::is_nmi("41020000017"));
        assert!(super::is_nmi("QAAAVZZZZZ"));
        assert!(!super::is_nmi("NOTAVALIDID"));
        assert!(!super::is_nmi("41020"));
        assert!(!super::is_nmi("4102000001X"));
    }
}
