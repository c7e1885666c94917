//! The transition table against the independent oracle, pair by pair.

mod common;

use common::oracle;
use hpp_session::diagram::Mermaid;
use hpp_session::table::{self, Edge};
use hpp_session::{Event, Status};

#[test]
fn every_status_event_pair_matches_the_oracle() {
    let mut checked = 0;
    for from in Status::ALL {
        for event in Event::ALL {
            assert_eq!(
                table::next(from, event),
                oracle::next(from, event),
                "{from} × {event}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 10 * 9);
}

#[test]
fn edges_list_exactly_the_oracle_edges_once_each() {
    let mut expected: Vec<Edge> = Status::ALL
        .into_iter()
        .flat_map(|from| Event::ALL.into_iter().map(move |event| (from, event)))
        .filter_map(|(from, event)| oracle::next(from, event).map(|to| Edge { from, event, to }))
        .collect();
    let mut listed: Vec<Edge> = table::edges().collect();
    assert_eq!(listed.len(), table::EDGES.len());
    let key = |e: &Edge| (e.from, e.event);
    expected.sort_by_key(key);
    listed.sort_by_key(key);
    assert_eq!(listed, expected);
    // The spec's count: 1 first open + 4 retry loops + 7 on the page + 5 from the identity
    // check + 7 disables.
    assert_eq!(listed.len(), 24);
}

#[test]
fn reachability_matches_breadth_first_search_over_the_oracle() {
    for from in Status::ALL {
        let seen = oracle::reachable(from);
        for (i, to) in Status::ALL.into_iter().enumerate() {
            assert_eq!(table::is_reachable(from, to), seen[i], "{from} ->* {to}");
        }
    }
    // Spot checks that read straight from the spec.
    assert!(table::is_reachable(Status::InProgress, Status::InProgress)); // via BACK
    assert!(!table::is_reachable(Status::Waiting, Status::Waiting));
    assert!(table::is_reachable(Status::Waiting, Status::Completed));
    assert!(!table::is_reachable(Status::Completed, Status::Disabled));
}

#[test]
fn final_statuses_are_absorbing() {
    for from in Status::ALL.into_iter().filter(|s| oracle::is_final(*s)) {
        assert!(from.is_final());
        for event in Event::ALL {
            assert_eq!(table::next(from, event), None, "{from} × {event}");
        }
        for to in Status::ALL {
            assert!(!table::is_reachable(from, to));
        }
    }
}

#[test]
fn status_predicates_match_the_spec() {
    for s in Status::ALL {
        assert_eq!(s.is_final(), oracle::is_final(s), "{s}");
        assert_eq!(s.can_retry(), oracle::can_come_back(s), "{s}");
    }
}

/// The README's copy of the diagram is exactly what the table renders.
#[test]
fn readme_diagram_is_rendered_from_the_table() {
    let readme = include_str!("../README.md");
    let start = readme
        .find("```mermaid\n")
        .expect("README has a mermaid block")
        + 11;
    let len = readme[start..]
        .find("```")
        .expect("the mermaid block is closed");
    let rendered = Mermaid.to_string();
    assert_eq!(
        &readme[start..start + len],
        rendered,
        "README diagram is stale; paste the output of `cargo run -p hpp-replay -- --diagram`"
    );
    // It has one line per edge, and finals leave.
    assert_eq!(rendered.matches(" --> ").count(), 1 + 24 + 3);
    assert!(rendered.contains("    FAILED --> IN_PROGRESS: open\n"));
    assert!(rendered.contains("    DISABLED --> [*]\n"));
}

#[test]
fn has_edge_matches_the_oracle() {
    for from in Status::ALL {
        for to in Status::ALL {
            let oracle = Event::ALL
                .into_iter()
                .any(|e| oracle::next(from, e) == Some(to));
            assert_eq!(table::has_edge(from, to), oracle, "{from} -> {to}");
        }
    }
}

#[test]
fn only_the_merchant_disables() {
    // Klarna sends status callbacks for the consumer's changes, not for the merchant's DELETE.
    for e in Event::ALL {
        assert_eq!(e.is_merchant(), e == Event::Disable, "{e}");
    }
}
