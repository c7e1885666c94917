//! Prints the lifecycle diagram and replays a sample journey through a `Session`.
//!
//! `cargo run --example replay` replays the embedded journey; `-- --diagram` prints only the
//! Mermaid diagram (the README's copy must equal it).

use hpp_session::diagram::Mermaid;
use hpp_session::{Completion, Event, Session, Timestamp};

/// A consumer opens the page, is declined, comes back, presses Back, comes back, and pays.
const SAMPLE: &[(&str, Event)] = &[
    ("2019-05-13T14:52:57.540Z", Event::Open),
    ("2019-05-13T14:53:10.002Z", Event::Decline),
    ("2019-05-13T14:53:30.118Z", Event::Open),
    ("2019-05-13T14:53:41.450Z", Event::GoBack),
    ("2019-05-13T14:53:40.000Z", Event::Open), // stamped before the last change: rejected
    ("2019-05-13T14:53:52.900Z", Event::Open),
    ("2019-05-13T14:54:04.675Z", Event::Authorize),
    ("2019-05-13T14:55:00.000Z", Event::Disable), // COMPLETED is final: rejected
];

fn main() {
    if std::env::args().any(|a| a == "--diagram") {
        print!("{Mermaid}");
        return;
    }
    println!("```mermaid\n{Mermaid}```\n");
    let created = Timestamp::parse("2019-05-13T14:51:43.507Z").expect("valid sample");
    let mut session = Session::new(created);
    println!(
        "{created}  created                    -> {}",
        session.status()
    );
    for &(at, event) in SAMPLE {
        let at = Timestamp::parse(at).expect("valid sample");
        let result = if event == Event::Authorize {
            let token = Completion::authorized("a1a8f727-2756-6058-bd3c-40069be0994b")
                .expect("valid sample");
            session.authorize(token, at)
        } else {
            session.apply(event, at)
        };
        match result {
            Ok(edge) => println!("{at}  {:<26} -> {}", edge.event.as_str(), edge.to),
            Err(err) => println!("{at}  {:<26} rejected: {err}", event.as_str()),
        }
    }
    println!(
        "\nfinal: {} after {} retries, completion {:?}",
        session.status(),
        session.retries(),
        session.completion()
    );
}
