//! The DER curves of a program as devices read them: DERCurveList and DERCurve under each
//! DERProgram, and the DERCurveLinks (opModVoltVar, opModFreqWatt, ...) that controls and
//! default controls carry to them.
//!
//! Curves come from the operator API (`/api/v1/der-curves`) and are stored without any
//! XML ([`crate::envelope::curve_records`]); here they become wire documents, each point as
//! an integer under the curve's fixed multipliers. Curves are read from the database on
//! each request: devices fetch them once per control, not on every poll.

use super::model::{CurveData, DerControlBase, DerCurve, DerCurveList, Link};
use super::server::{ListQuery, Result, Sep2Error, Sep2State, device_program, xml};
use super::tls::PeerIdentity;
use crate::envelope::Excitation;
use crate::envelope::curve_records::DerCurveRecord;
use crate::envelope::curves::{CurveType, scaled};
use crate::store::Record;
use crate::store::record::dynamic;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use std::collections::BTreeMap;

/// Routes of this function set.
pub fn routes() -> Router<Sep2State> {
    Router::new()
        .route("/edev/{edev}/derp/{prog}/dc", get(curve_list))
        .route("/edev/{edev}/derp/{prog}/dc/{mrid}", get(curve))
}

/// The href of a program's DERCurveList for an EndDevice.
pub fn list_href(edev: &str, program: &str) -> String {
    format!("/edev/{edev}/derp/{program}/dc")
}

/// Sets the DERCurveLink of each curve mode `curves` names; `list` is the program's
/// DERCurveList href as the device sees it.
pub fn attach_links(base: &mut DerControlBase, curves: &BTreeMap<CurveType, String>, list: &str) {
    for (t, id) in curves {
        let link = Some(Link::new(format!("{list}/{id}")));
        let slot = match t {
            CurveType::FreqWatt => &mut base.op_mod_freq_watt,
            CurveType::HfrtMayTrip => &mut base.op_mod_hfrt_may_trip,
            CurveType::HfrtMustTrip => &mut base.op_mod_hfrt_must_trip,
            CurveType::HvrtMayTrip => &mut base.op_mod_hvrt_may_trip,
            CurveType::HvrtMomentaryCessation => &mut base.op_mod_hvrt_momentary_cessation,
            CurveType::HvrtMustTrip => &mut base.op_mod_hvrt_must_trip,
            CurveType::LfrtMayTrip => &mut base.op_mod_lfrt_may_trip,
            CurveType::LfrtMustTrip => &mut base.op_mod_lfrt_must_trip,
            CurveType::LvrtMayTrip => &mut base.op_mod_lvrt_may_trip,
            CurveType::LvrtMomentaryCessation => &mut base.op_mod_lvrt_momentary_cessation,
            CurveType::LvrtMustTrip => &mut base.op_mod_lvrt_must_trip,
            CurveType::VoltVar => &mut base.op_mod_volt_var,
            CurveType::VoltWatt => &mut base.op_mod_volt_watt,
            CurveType::WattPf => &mut base.op_mod_watt_pf,
            CurveType::WattVar => &mut base.op_mod_watt_var,
        };
        *slot = link;
    }
}

/// Seconds as 2030.5 hundredths of a second (validated to fit when the curve was made).
fn tms(s: Option<f64>) -> Option<u16> {
    s.map(|s| (s * 100.0).round().clamp(0.0, f64::from(u16::MAX)) as u16)
}

/// A stored curve as the DERCurve document at `href`.
pub fn curve_doc(rec: &DerCurveRecord, href: String) -> Result<DerCurve> {
    // Validation fixed both multipliers at creation; a row without them is corrupt.
    let (Some(xm), Some(ym)) = (rec.x_multiplier, rec.y_multiplier) else {
        return Err(Sep2Error::Internal(format!(
            "DER curve {} has no multipliers",
            rec.id
        )));
    };
    let mut points = Vec::with_capacity(rec.points.len());
    for p in &rec.points {
        let (Some(x), Some(y)) = (scaled(p.x, xm), scaled(p.y, ym)) else {
            return Err(Sep2Error::Internal(format!(
                "DER curve {} has a point that does not fit Int16",
                rec.id
            )));
        };
        points.push(CurveData {
            excitation: p.excitation.map(|e| e == Excitation::UnderExcited),
            xvalue: i32::from(x),
            yvalue: i32::from(y),
        });
    }
    Ok(DerCurve {
        href: Some(href),
        m_rid: rec.id.clone(),
        // String32 on the wire.
        description: rec
            .description
            .as_ref()
            .map(|d| d.chars().take(32).collect()),
        version: None,
        autonomous_v_ref_enable: rec.autonomous_v_ref_enable,
        autonomous_v_ref_time_constant: rec.autonomous_v_ref_time_constant_s,
        creation_time: rec.created_at,
        curve_data: points,
        curve_type: rec.curve_type.code(),
        open_loop_tms: tms(rec.open_loop_s),
        ramp_dec_tms: tms(rec.ramp_dec_s),
        ramp_inc_tms: tms(rec.ramp_inc_s),
        ramp_pt1_tms: tms(rec.ramp_pt1_s),
        v_ref: rec
            .v_ref_percent
            .map(|v| (v * 100.0).round().clamp(0.0, 10_000.0) as u16),
        x_multiplier: xm,
        y_multiplier: ym,
        y_ref_type: rec.y_ref_type.code(),
    })
}

/// A program's curves, newest first (ties by mRID, descending).
async fn program_curves(state: &Sep2State, program: &str) -> Result<Vec<DerCurveRecord>> {
    let sql = format!(
        "SELECT {} FROM der_curves WHERE program_id = $1 ORDER BY created_at DESC, id DESC",
        DerCurveRecord::COLUMNS.join(", ")
    );
    let rows = dynamic(sql)
        .bind(program.to_string())
        .fetch_all(state.registry.store().pool())
        .await?;
    rows.iter()
        .map(|r| DerCurveRecord::from_row(r).map_err(Sep2Error::from))
        .collect()
}

async fn curve_list(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path((id, prog)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let (ed, p) = device_program(&state, &peer, &id, &prog).await?;
    let href = list_href(&ed.id, &p.id);
    let curves: Vec<_> = program_curves(&state, &p.id)
        .await?
        .into_iter()
        .filter(|c| q.a.is_none_or(|a| c.created_at > a))
        .collect();
    let (all, page) = q.window(curves);
    let docs = page
        .iter()
        .map(|c| curve_doc(c, format!("{href}/{}", c.id)))
        .collect::<Result<Vec<_>>>()?;
    xml(
        &state,
        &DerCurveList {
            href: Some(href),
            all,
            results: docs.len() as u32,
            der_curves: docs,
        },
    )
}

async fn curve(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path((id, prog, mrid)): Path<(String, String, String)>,
) -> Result<Response> {
    let (ed, p) = device_program(&state, &peer, &id, &prog).await?;
    let sql = format!(
        "SELECT {} FROM der_curves WHERE program_id = $1 AND id = $2",
        DerCurveRecord::COLUMNS.join(", ")
    );
    let row = dynamic(sql)
        .bind(p.id.clone())
        .bind(mrid.to_ascii_uppercase())
        .fetch_optional(state.registry.store().pool())
        .await?
        .ok_or(Sep2Error::NotFound)?;
    let rec = DerCurveRecord::from_row(&row)?;
    let href = format!("{}/{}", list_href(&ed.id, &p.id), rec.id);
    xml(&state, &curve_doc(&rec, href)?)
}
