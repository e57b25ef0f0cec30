//! Green Button parser benchmark: MB/s of ESPI XML parsed, against a raw quick-xml event
//! scan of the same file measured in the same run (the ceiling any quick-xml parser has).
//!
//! Run with `cargo bench --bench greenbutton`. The input is the GBA 15-minute sample
//! (tests/fixtures/greenbutton/gba_electric_15min_cost_15days.xml) with its IntervalBlocks
//! repeated, each copy shifted by 15 days, to `SWITCHYARD_BENCH_GB_MB` (default 200) MB:
//! years of 15-minute data for one UsagePoint, read from a file through a `BufReader`.

use anyhow::{Context, Result};
use std::io::{BufReader, Write};
use std::time::{Duration, Instant};
use switchyard::protocol::greenbutton::{parse_feed, series};

const SHIFT: i64 = 15 * 86_400;

/// `block` with every `<start>` value moved by `by` seconds.
fn shifted(block: &str, by: i64) -> String {
    let mut out = String::with_capacity(block.len() + 64);
    let mut rest = block;
    while let Some(i) = rest.find("<start>") {
        let (head, tail) = rest.split_at(i + "<start>".len());
        out.push_str(head);
        let end = tail.find("</start>").expect("closed start");
        let v: i64 = tail[..end].trim().parse().expect("a number");
        out.push_str(&(v + by).to_string());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn build_input(target: usize, path: &std::path::Path) -> Result<usize> {
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/greenbutton/gba_electric_15min_cost_15days.xml"
    ))?;
    let first = sample.find("<IntervalBlock").context("an IntervalBlock")?;
    let from = sample[..first].rfind("<entry").context("its entry")?;
    let last = sample.rfind("<IntervalBlock").context("an IntervalBlock")?;
    let to = last + sample[last..].find("</entry>").context("closed")? + "</entry>".len();
    let (head, blocks, tail) = (&sample[..from], &sample[from..to], &sample[to..]);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(head.as_bytes())?;
    let mut size = head.len() + tail.len();
    let mut k = 0;
    while size < target {
        let b = shifted(blocks, k * SHIFT);
        f.write_all(b.as_bytes())?;
        size += b.len();
        k += 1;
    }
    f.write_all(tail.as_bytes())?;
    f.flush()?;
    Ok(size)
}

fn raw_scan(path: &std::path::Path) -> Result<usize> {
    let mut reader = quick_xml::Reader::from_reader(BufReader::with_capacity(
        256 * 1024,
        std::fs::File::open(path)?,
    ));
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut events = 0;
    loop {
        match reader.read_event_into(&mut buf)? {
            quick_xml::events::Event::Eof => break,
            e => {
                std::hint::black_box(&e);
                events += 1;
            }
        }
        buf.clear();
    }
    Ok(events)
}

fn mbps(bytes: usize, d: Duration) -> String {
    format!("{:.0} MB/s", bytes as f64 / 1e6 / d.as_secs_f64())
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<(Duration, T)> {
    let mut best: Option<(Duration, T)> = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f()?;
        let d = t.elapsed();
        if best.as_ref().is_none_or(|(b, _)| d < *b) {
            best = Some((d, v));
        }
    }
    Ok(best.expect("at least one run"))
}

fn main() -> Result<()> {
    let mb: usize = std::env::var("SWITCHYARD_BENCH_GB_MB")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("SWITCHYARD_BENCH_GB_MB")?
        .unwrap_or(200);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("feed.xml");
    let size = build_input(mb * 1_000_000, &path)?;
    // Read once so that every measurement starts from the page cache.
    std::hint::black_box(std::fs::read(&path)?.len());

    let (raw, events) = best_of(3, || raw_scan(&path))?;
    let (parse, feed) = best_of(3, || {
        Ok(parse_feed(BufReader::with_capacity(
            256 * 1024,
            std::fs::File::open(&path)?,
        ))?)
    })?;
    let intervals: usize = feed.intervals.iter().map(|(_, v)| v.len()).sum();
    let t = Instant::now();
    let s = series::build(&feed)?;
    let build = t.elapsed();
    let sum = s[0].summary();

    println!(
        "Green Button parse: {:.1} MB of ESPI XML, {events} XML events, {intervals} IntervalReadings",
        size as f64 / 1e6
    );
    println!();
    println!("| Measurement | Throughput | Time |");
    println!("|---|---:|---:|");
    println!(
        "| raw quick-xml event scan (baseline) | {} | {:.3} s |",
        mbps(size, raw),
        raw.as_secs_f64()
    );
    println!(
        "| parse_feed (streaming ESPI parser) | {} | {:.3} s |",
        mbps(size, parse),
        parse.as_secs_f64()
    );
    println!(
        "| parse_feed + series::build (checked Wh series) | {} | {:.3} s |",
        mbps(size, parse + build),
        (parse + build).as_secs_f64()
    );
    println!();
    println!(
        "parser at {:.0}% of the raw scan; summary: {} intervals, {:.0} kWh delivered, {} gaps",
        100.0 * raw.as_secs_f64() / parse.as_secs_f64(),
        sum.intervals,
        sum.wh_delivered / 1000.0,
        sum.gaps
    );
    Ok(())
}
