//! The embedded engine in a dozen lines: open, commit, read back, follow the tail.
//!
//! Run with `cargo run -p annals-engine --example quickstart -- /tmp/annals-quickstart`.

use std::time::Duration;

use annals_engine::{
    uuid::Uuid, Commit, Engine, EngineConfig, EventLogSequenceNumber, EventType, TenantId,
    UncommittedEvent,
};

fn main() -> Result<(), annals_engine::Error> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "./data".into());
    let engine = Engine::open(EngineConfig::new(&dir))?;
    println!("opened {dir} with the {} backend", engine.io_backend());

    let tenant = engine.tenant_or_create(TenantId(Uuid::from_u128(
        0x445f_8ea8_1a6f_40d7_b2fc_796d_ba92_dc44,
    )))?;
    let log = tenant.event_log()?;
    let receipt = log.append(&Commit {
        occurred_ns: 0,
        execution_context: annals_engine::ExecutionContext::default(),
        events: vec![UncommittedEvent {
            event_source_id: "cart-42".into(),
            event_type: EventType {
                id: Uuid::from_u128(1),
                generation: 1,
            },
            content: r#"{"item":"book","quantity":1}"#.into(),
            ..UncommittedEvent::default()
        }],
    })?;
    println!("committed {} event(s) at {}", receipt.count, receipt.first);

    for event in log.read(EventLogSequenceNumber::ZERO, 10, 1 << 20)?.views() {
        let event = event?;
        println!(
            "#{} {} {}",
            event.sequence_number, event.event_source_id, event.content
        );
    }

    let mut tail = log.subscribe(log.next_sequence_number());
    let batch = tail.next_batch(10, Some(Duration::from_millis(100)))?;
    println!("tail: {} new event(s) within 100 ms", batch.len());
    Ok(())
}
