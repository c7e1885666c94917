//! The built `hpp-replay` binary, run as a user runs it: on the embedded sample, on files and
//! standard input, on hostile input, with `--summary`, and with bad usage. Expected outputs are
//! written by hand (the sample's golden file was reviewed line by line), not captured from the
//! tool.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hpp-replay"))
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

/// Runs with `input` on standard input.
fn run_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_embedded_sample_replays_to_its_golden_output() {
    let o = run(&["--json"]);
    assert!(o.status.success());
    let golden = std::fs::read_to_string(data("sample.expected.jsonl")).unwrap();
    assert_eq!(stdout(&o), golden);
    let o = run(&[]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(text.starts_with("Replaying the embedded sample (replay/sample.jsonl)\n"));
    assert!(text.contains("PLACE ORDER with a1a8f727-2756-6058-bd3c-40069be0994b"));
    assert!(text.contains("RECORD ORDER 93d644a2-43f3-11e9-b210-d663bd873d93 (ffc25786)"));
}

/// The timeline of the sample file, byte for byte (next reads included: only the timeline
/// shows them).
#[test]
fn the_sample_file_replays_to_its_golden_timeline() {
    // From the workspace's root, as CI runs it (the timeline's first line names the file).
    let root = data("..");
    let o = bin()
        .current_dir(&root)
        .arg("replay/sample.jsonl")
        .output()
        .unwrap();
    assert!(o.status.success());
    let golden = std::fs::read_to_string(data("sample.expected.txt")).unwrap();
    assert_eq!(stdout(&o), golden);
    assert!(golden.contains("next read at ") && golden.contains("no more reads needed"));
}

#[test]
fn a_file_and_standard_input_replay_the_same() {
    let from_file = run(&["--json", data("sample.jsonl").to_str().unwrap()]);
    let sample = std::fs::read(data("sample.jsonl")).unwrap();
    let from_stdin = run_stdin(&["--json", "-"], &sample);
    assert!(from_file.status.success() && from_stdin.status.success());
    assert_eq!(from_file.stdout, from_stdin.stdout);
    assert_eq!(
        stdout(&from_file),
        std::fs::read_to_string(data("sample.expected.jsonl")).unwrap()
    );
}

#[test]
fn hostile_input_is_rejected_line_by_line_and_the_replay_goes_on() {
    let good = br#"{"at":"2019-05-13T14:51:50.000Z","read":{"session_id":"s","status":"WAITING","updated_at":"2019-05-13T14:51:43.507Z"}}"#;
    let mut input = Vec::new();
    input.extend_from_slice(good);
    input.extend_from_slice(b"\r\n"); // 1: CRLF
    input.extend_from_slice(&vec![b'a'; 3 << 20]); // 2: 3 MiB, over the 1 MiB limit
    input.push(b'\n');
    input.extend_from_slice(b"{\"at\":\"\xff\xfe\"}\n"); // 3: not UTF-8
    input.extend_from_slice(b"{\"at\":\0}\n"); // 4: a NUL byte
    input.extend_from_slice(b"\n"); // 5: empty
    input.extend_from_slice(good); // 6: the same read again, no final newline
    let o = run_stdin(&["--json", "-"], &input);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = json_lines(&o);
    let outcomes: Vec<(u64, &str)> = lines
        .iter()
        .map(|l| (l["line"].as_u64().unwrap(), l["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (1, "advanced"),
            (2, "rejected"),
            (3, "rejected"),
            (4, "rejected"),
            (5, "rejected"),
            (6, "duplicate")
        ]
    );
    assert_eq!(
        lines[1]["error"],
        "line of 3145728 bytes is longer than the 1048576 accepted"
    );
    assert!(lines[2]["error"].as_str().unwrap().starts_with("not UTF-8"));
    assert!(
        lines[3]["error"]
            .as_str()
            .unwrap()
            .starts_with("not a log line")
    );
    // A smaller limit, set by the user.
    let o = run_stdin(&["--json", "--max-line-bytes", "10", "-"], good);
    assert_eq!(json_lines(&o)[0]["outcome"], "rejected");
}

#[test]
fn an_empty_input_replays_nothing() {
    let o = run_stdin(&["--json", "-"], b"");
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
    let o = run_stdin(&["--summary", "--json", "-"], b"");
    let s: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (s["lines"].as_u64(), s["sessions"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn the_summary_says_what_a_log_came_to() {
    let log = data("tests/data/summary.jsonl");
    let o = run(&["--summary", log.to_str().unwrap()]);
    assert!(o.status.success());
    let expected = std::fs::read_to_string(data("tests/data/summary.expected.txt")).unwrap();
    assert_eq!(stdout(&o), expected);

    let o = run(&["--summary", "--json", log.to_str().unwrap()]);
    let got: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let expected = serde_json::json!({
        "lines": 9,
        "sessions": 4,
        "by_status": {"BACK": 1, "COMPLETED": 2, "UNCONFIRMED": 1},
        "actions": {"place_order": 1, "record_order": 1, "review_completion": 0, "release": 1, "disable": 0},
        "conflicts": ["s-conflict"],
        "rejected": {"count": 2, "first": [
            {"line": 7, "error": "not a log line: expected ident at line 1 column 2"},
            {"line": 8, "error": "unknown session status \"PAID\""}
        ]},
        "as_of": "2019-05-13T10:00:50.000Z",
        "open": [
            {"session_id": "s-hint", "status": null, "claim": "IN_PROGRESS", "next_read": "2019-05-13T10:00:50.000Z"},
            {"session_id": "s-open", "status": "BACK", "next_read": "2019-05-13T10:44:24.547Z"}
        ]
    });
    assert_eq!(got, expected);
}

#[test]
fn trust_verified_takes_callbacks_as_evidence() {
    let callback = br#"{"at":"2019-05-13T14:54:05.100Z","callback":{"event_id":"e","session":{"session_id":"s","status":"COMPLETED","authorization_token":"tok","updated_at":"2019-05-13T14:54:04.675Z"}}}"#;
    let hint = json_lines(&run_stdin(&["--json", "-"], callback));
    let verified = json_lines(&run_stdin(
        &["--json", "--trust", "verified", "-"],
        callback,
    ));
    // A hint asks for nothing but a read, which is the schedule's (the summary's next read).
    assert_eq!(hint[0]["actions"], serde_json::json!([]));
    assert_eq!(hint[0]["claim"], "COMPLETED");
    assert_eq!(hint[0]["status"], serde_json::Value::Null);
    assert_eq!(verified[0]["actions"][0]["kind"], "place_order");
    assert_eq!(verified[0]["status"], "COMPLETED");
}

#[test]
fn a_missing_file_is_an_error_that_names_it() {
    let o = run(&["--json", "no/such/log.jsonl"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("no/such/log.jsonl"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn bad_usage_exits_2_and_help_and_version_work() {
    for args in [
        &["--trust", "bogus"][..],
        &["--bogus"],
        &["--diagram", "--json"],
        &["simulate"],
        &["simulate", "--sessions", "3", "--loss", "1.5"],
        &["check", "only-one-file"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(!o.stderr.is_empty());
    }
    let help = stdout(&run(&["--help"]));
    for needle in ["--summary", "--trust", "Exit status", "simulate", "check"] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
    assert_eq!(stdout(&run(&["--version"])), "hpp-replay 0.1.0\n");
    let diagram = stdout(&run(&["--diagram"]));
    assert_eq!(diagram, hpp_session::diagram::Mermaid.to_string());
}

fn temp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    dir.join(format!("{}-{name}", std::process::id()))
}

#[test]
fn a_simulated_log_is_deterministic_and_checks_against_its_expected_actions() {
    let expected = temp("expected.jsonl");
    let args = [
        "simulate",
        "--sessions",
        "300",
        "--seed",
        "3",
        "--forged",
        "0.3",
        "--loss",
        "0.3",
        "--read-failure",
        "0.1",
        "--expected",
    ];
    let a = run(&[&args[..], &[expected.to_str().unwrap()]].concat());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let expected_text = std::fs::read_to_string(&expected).unwrap();
    let b = run(&[&args[..], &[expected.to_str().unwrap()]].concat());
    assert_eq!(a.stdout, b.stdout, "the same seed gives the same bytes");
    assert_eq!(std::fs::read_to_string(&expected).unwrap(), expected_text);
    assert_eq!(expected_text.lines().count(), 300);
    // Every expected line is one merchant action, of a kind the oracle knows.
    for line in expected_text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = v["actions"][0]["kind"].as_str().unwrap();
        assert!(
            [
                "place_order",
                "record_order",
                "review_completion",
                "release"
            ]
            .contains(&kind),
            "{line}"
        );
    }
    let log = temp("log.jsonl");
    std::fs::write(&log, &a.stdout).unwrap();
    let o = run(&["check", log.to_str().unwrap(), expected.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(
        out.starts_with("300 sessions expected: 300 matched, 0 differ; "),
        "{out}"
    );
    assert!(o.status.success());
    // Only forged callbacks are rejected (completion data on an open status, a hint from the
    // future): never more lines than the adversary posted.
    let rejected: u64 = out
        .split("; ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let stats = String::from_utf8(a.stderr.clone()).unwrap();
    let forged: u64 = stats
        .split(" forged")
        .next()
        .unwrap()
        .rsplit('(')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rejected > 0 && rejected <= forged,
        "{rejected} rejected, {forged} forged: {stats}"
    );
    // The replayed log has no rejected line, no conflict from Klarna's own callbacks.
    let o = run(&["--summary", "--json", log.to_str().unwrap()]);
    let s: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(s["sessions"], 300);

    // A log that lost the lines of one session: that session differs, and check says so.
    let text = String::from_utf8(a.stdout.clone()).unwrap();
    let first: serde_json::Value =
        serde_json::from_str(expected_text.lines().next().unwrap()).unwrap();
    let id = first["session_id"].as_str().unwrap();
    let mut without = String::new();
    for line in text.lines().filter(|l| !l.contains(id)) {
        without.push_str(line);
        without.push('\n');
    }
    std::fs::write(&log, without).unwrap();
    let o = run(&["check", log.to_str().unwrap(), expected.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.starts_with("300 sessions expected: 299 matched, 1 differ"),
        "{out}"
    );
    assert!(out.contains(id) && out.contains("replayed: []"), "{out}");
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&expected);
}

/// The simulator's counts, from `simulate`'s report on standard error.
fn sim_counts(o: &Output) -> (u64, u64, u64) {
    let err = String::from_utf8(o.stderr.clone()).unwrap();
    let number = |after: &str| -> u64 {
        let tail = err.split(after).next().unwrap();
        tail.rsplit([' ', '(']).next().unwrap().parse().unwrap()
    };
    (number(" lines"), number(" callbacks"), number(" reads"))
}

#[test]
fn simulate_takes_each_delivery_option() {
    let sim = |extra: &[&str]| {
        let args = [&["simulate", "--sessions", "150", "--seed", "4"][..], extra].concat();
        let o = run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    let perfect = [
        "--loss",
        "0",
        "--slow-ack",
        "0",
        "--event-loss",
        "0",
        "--max-delay",
        "0",
    ];
    // No loss, no late acknowledgement, no delay: one call per event, in order, within a second
    // of the change.
    let o = sim(&perfect);
    let callbacks: Vec<serde_json::Value> = json_lines(&o)
        .into_iter()
        .filter(|l| l.get("callback").is_some())
        .collect();
    let ids: std::collections::HashSet<_> = callbacks
        .iter()
        .map(|c| c["callback"]["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), callbacks.len());
    for c in &callbacks {
        let at = hpp_session::Timestamp::parse(c["at"].as_str().unwrap()).unwrap();
        let changed = c["callback"]["session"]["updated_at"].as_str().unwrap();
        let changed = hpp_session::Timestamp::parse(changed).unwrap();
        assert!(at.duration_since(changed).unwrap() < std::time::Duration::from_secs(1));
    }
    let (_, perfect_callbacks, perfect_reads) = sim_counts(&o);
    assert_eq!(perfect_callbacks, callbacks.len() as u64);
    // Every call lost, or every event: no callback at all.
    for lost in [["--loss", "1"], ["--event-loss", "1"]] {
        assert_eq!(sim_counts(&sim(&lost)).1, 0, "{lost:?}");
    }
    // Every call acknowledged too late: four calls per event.
    let late = [&perfect[..2], &["--slow-ack", "1"], &perfect[4..]].concat();
    assert_eq!(sim_counts(&sim(&late)).1, 4 * perfect_callbacks);
    // A delay reorders: some callback arrives after one of a later change.
    let o = sim(&[&perfect[..6], &["--max-delay", "600"]].concat());
    let stamps: Vec<String> = json_lines(&o)
        .iter()
        .filter_map(|l| {
            l["callback"]["session"]["updated_at"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(
        stamps.windows(2).any(|w| w[0] > w[1]),
        "no callback overtook another"
    );
    // Failing reads are retried (more reads than read lines); a merchant time limit reads less,
    // a tighter guarantee more.
    let o = sim(&[&perfect[..], &["--read-failure", "0.5"]].concat());
    let read_lines = json_lines(&o)
        .iter()
        .filter(|l| l.get("read").is_some() || l.get("not_found").is_some())
        .count() as u64;
    assert!(sim_counts(&o).2 > read_lines + 100);
    let o = sim(&[&perfect[..], &["--abandon-after", "120"]].concat());
    assert!(sim_counts(&o).2 < perfect_reads / 2);
    let o = sim(&[&perfect[..], &["--detect-within", "15"]].concat());
    assert!(sim_counts(&o).2 > perfect_reads * 2);
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let mut child = bin()
        .args(["simulate", "--sessions", "20000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 100];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("cannot write"));
}

const PAID_READ: &str = r#"{"at":"2019-05-13T14:54:06Z","read":{"session_id":"39a1c773-bafd-754d-af1f-b30c592f1267","status":"COMPLETED","updated_at":"2019-05-13T14:54:04.675Z","expires_at":"2019-05-15T13:51:43.507Z","authorization_token":"a1a8f727-2756-6058-bd3c-40069be0994b"}}"#;

#[test]
fn the_timeline_names_standard_input_and_routing_and_expiry_show() {
    let o = run_stdin(&["-"], format!("{PAID_READ}\n").as_bytes());
    assert!(
        stdout(&o).starts_with("Replaying standard input\n"),
        "{}",
        stdout(&o)
    );
    // A line's session_id equal to the body's routes as the body's.
    let same = PAID_READ.replace(
        r#"{"at":"2019-05-13T14:54:06Z","#,
        r#"{"at":"2019-05-13T14:54:06Z","session_id":"39a1c773-bafd-754d-af1f-b30c592f1267","#,
    );
    // A paid session that expired still shows COMPLETED (an unpaid one shows EXPIRED).
    let expired = r#"{"at":"2019-05-16T00:00:00Z","not_found":true,"session_id":"39a1c773-bafd-754d-af1f-b30c592f1267"}"#;
    let o = run_stdin(&["--json", "-"], format!("{same}\n{expired}\n").as_bytes());
    let lines = json_lines(&o);
    assert_eq!(lines[0]["outcome"], "advanced", "{lines:?}");
    assert_eq!(lines[1]["status"], "COMPLETED", "{lines:?}");
    // The summary counts it as paid, and an unpaid session that expired as EXPIRED.
    let open = open_sessions(1);
    let open_expired = r#"{"at":"2019-05-16T00:00:00Z","not_found":true,"session_id":"s-00"}"#;
    let input = format!("{same}\n{expired}\n{open}{open_expired}\n");
    let o = run_stdin(&["--summary", "--json", "-"], input.as_bytes());
    let s: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        s["by_status"],
        serde_json::json!({"COMPLETED": 1, "EXPIRED": 1}),
        "{s}"
    );
}

#[test]
fn the_summary_lists_the_first_five_rejected_lines() {
    let input = "x\n".repeat(7);
    let o = run_stdin(&["--summary", "--json", "-"], input.as_bytes());
    let s: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(s["rejected"]["count"], 7);
    let lines: Vec<u64> = s["rejected"]["first"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [1, 2, 3, 4, 5]);
}

/// `n` sessions, each read once `IN_PROGRESS`: all open at the end.
fn open_sessions(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"at":"2019-05-13T14:53:00Z","read":{{"session_id":"s-{i:02}","status":"IN_PROGRESS","updated_at":"2019-05-13T14:52:57.540Z","expires_at":"2019-05-15T13:51:43.507Z"}}}}"#
            ) + "\n"
        })
        .collect()
}

#[test]
fn the_human_summary_lists_twenty_open_sessions_then_counts_the_rest() {
    let summary = |input: &str| stdout(&run_stdin(&["--summary", "-"], input.as_bytes()));
    let none = summary(&format!("{PAID_READ}\n"));
    assert!(none.ends_with("\nOpen sessions: none\n"), "{none}");
    let twenty = summary(&open_sessions(20));
    assert!(twenty.contains("(20), soonest read first:"), "{twenty}");
    assert!(twenty.contains("  s-19  IN_PROGRESS"), "{twenty}");
    assert!(!twenty.contains("more (--json lists them all)"), "{twenty}");
    let many = summary(&open_sessions(23));
    assert!(many.contains("(23), soonest read first:"), "{many}");
    // Twenty listed (soonest read first: each session's reads are spread by its id).
    let listed = many
        .lines()
        .filter(|l| l.contains("  IN_PROGRESS      read at"))
        .count();
    assert_eq!(listed, 20, "{many}");
    assert!(
        many.ends_with("  … and 3 more (--json lists them all)\n"),
        "{many}"
    );
}

#[test]
fn a_full_disk_is_an_error_that_says_so() {
    let Ok(full) = std::fs::File::options().write(true).open("/dev/full") else {
        return; // not Linux
    };
    let o = bin()
        .args(["--json"])
        .stdout(Stdio::from(full))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("hpp-replay: cannot write the output: "),
        "{err}"
    );
}

#[test]
fn the_timeline_names_the_file_it_replays() {
    let path = temp("named.jsonl");
    std::fs::write(&path, format!("{PAID_READ}\n")).unwrap();
    let o = run(&[path.to_str().unwrap()]);
    let text = stdout(&o);
    assert!(
        text.starts_with(&format!("Replaying {}\n", path.display())),
        "{text}"
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn one_and_two_threads_give_the_same_output() {
    let log = temp("threads.jsonl");
    let expected = temp("threads.expected.jsonl");
    let sim = run(&[
        "simulate",
        "--sessions",
        "200",
        "--forged",
        "0.3",
        "--read-failure",
        "0.1",
        "--expected",
        expected.to_str().unwrap(),
    ]);
    assert!(sim.status.success());
    std::fs::write(&log, &sim.stdout).unwrap();
    let log = log.to_str().unwrap();
    for args in [&["--json"][..], &["--summary", "--json"], &[]] {
        let one = run(&[args, &["--threads", "1", log]].concat());
        let two = run(&[args, &["--threads", "2", log]].concat());
        assert!(one.status.success() && two.status.success());
        if args.contains(&"--summary") {
            // Forged claims list no conflicts any more: the summary is short, and complete.
            let summary: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
            assert_eq!(summary["sessions"], 200);
        } else {
            assert!(one.stdout.len() > 1000);
        }
        assert_eq!(one.stdout, two.stdout, "{args:?}");
    }
    let check = |threads| {
        let o = run(&[
            "check",
            "--threads",
            threads,
            log,
            expected.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        o.stdout
    };
    assert_eq!(check("1"), check("2"));
    for bad in ["0", "3", "two"] {
        assert_eq!(run(&["--threads", bad]).status.code(), Some(2), "{bad}");
    }
}

/// The examples of issue 14, through the binary: a paid read in odd spellings stays paid, and the
/// 404 after expiry releases nothing; a known expiry survives a read without it; rejected lines
/// create no session; a byte-order mark opens a log that still reads.
#[test]
fn paid_stays_paid_and_rejected_lines_leave_no_session_through_the_binary() {
    let log = concat!(
        "\u{feff}",
        r#"{"at":"2019-05-13T14:54:10Z","read":{"session_id":"s","status":"COMPLETED","updated_at":"2019-05-13T14:54:04.675Z","expires_at":"2019-05-15T13:51:43.507Z","order_id":1234567}}"#,
        "\n",
        r#"{"at":"2019-05-16T00:00:00Z","not_found":true,"session_id":"s"}"#,
        "\n",
        r#"{"at":"2019-05-13T14:54:10Z","read":{"session_id":"t","status":"COMPLET\u0045D","updated_at":"2019-05-13T14:54:04.675Z","expires_at":"2019-05-15T13:51:43.507Z","authorization_token":"a\/b"}}"#,
        "\n",
        r#"{"at":"2019-05-16T00:00:00Z","not_found":true,"session_id":"t"}"#,
        "\n",
        r#"{"at":"2019-05-13T14:54:10Z","read":{"session_id":"u","status":"COMPLETED","updated_at":null,"expires_at":"2019-05-15T13:51:43.507","authorization_token":"tok-u"}}"#,
        "\n",
        r#"{"at":"2019-05-13T14:54:10Z","read":{"session_id":"v","status":"COMPLETED","authorization_token":"tok-v"}}"#,
        "\n",
        r#"{"at":"2019-05-13T14:54:10Z","not_found":true,"session_id":"ghost"}"#,
        "\n",
        r#"{"at":"2019-05-13T14:54:10Z","callback":{"event_id":"e","session":{"session_id":"future","status":"CANCELLED","updated_at":"2030-01-01T00:00:00Z"}}}"#,
        "\n",
        r#"{"at":"2019-05-13T14:00:00Z","read":{"session_id":"w","status":"WAITING","updated_at":"2019-05-13T13:51:43.507Z","expires_at":"2019-05-15T13:51:43.507Z"}}"#,
        "\n",
        r#"{"at":"2019-05-13T14:10:00Z","read":{"session_id":"w","status":"IN_PROGRESS","updated_at":"2019-05-13T14:05:00Z"}}"#,
        "\n",
        r#"{"at":"2019-05-16T00:00:00Z","not_found":true,"session_id":"w"}"#,
        "\n",
    );
    let o = run_stdin(&["--json", "-"], log.as_bytes());
    assert!(o.status.success());
    let records = json_lines(&o);
    let kinds = |i: usize| {
        records[i]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(records[0]["status"], "COMPLETED", "{}", records[0]);
    assert_eq!(kinds(0), ["review_completion"]);
    assert_eq!(records[1]["outcome"], "rejected");
    assert_eq!(kinds(2), ["place_order"]);
    assert_eq!(records[2]["actions"][0]["authorization_token"], "a/b");
    // Expired, but paid: still COMPLETED, and nothing to release.
    assert_eq!(records[3]["outcome"], "expired", "{}", records[3]);
    assert_eq!(records[3]["status"], "COMPLETED");
    assert!(kinds(3).is_empty());
    assert_eq!(kinds(4), ["place_order"]);
    assert_eq!(
        records[4]["actions"][0]["place_by"],
        serde_json::Value::Null
    );
    assert_eq!(kinds(5), ["place_order"]);
    assert_eq!(records[6]["outcome"], "rejected");
    assert_eq!(records[7]["outcome"], "rejected");
    assert_eq!(kinds(10), ["release"]);
    assert_eq!(records[10]["actions"][0]["reason"], "EXPIRED");
    let released: usize = (0..records.len())
        .filter(|&i| {
            records[i]["actions"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
                && kinds(i).contains(&"release".to_owned())
        })
        .count();
    assert_eq!(released, 1, "only the unpaid session w is released");

    let o = run_stdin(&["--summary", "--json", "-"], log.as_bytes());
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["sessions"], 5, "{summary}");
    assert_eq!(summary["open"], serde_json::json!([]), "{summary}");
}

#[test]
fn an_out_of_range_simulate_option_is_a_usage_error() {
    // A guarantee past the token's hour cannot be kept.
    let o = run(&["simulate", "--sessions", "1", "--detect-within", "60"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--detect-within") && err.contains("60 minutes"),
        "{err}"
    );
    // The issue's hang: a fleet whose read budget rounds to 0 a second (here `--limit 1` and
    // `--read-share 0`) exits 2 with a clear message, at once, instead of looping forever.
    for args in [
        &["--limit", "1"][..],
        &["--read-share", "0"],
        &["--limit", "0"],
    ] {
        let o = run(&[&["simulate", "--sessions", "5", "--rate", "1/s"], args].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("leaves no read a second") || err.contains("--limit"),
            "{err}"
        );
    }
}

#[test]
fn the_fleet_reports_and_fails_when_the_guarantee_breaks() {
    let o = run(&[
        "simulate",
        "--rate",
        "1.16/s",
        "--sessions",
        "2000",
        "--limit",
        "50",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.starts_with("2000 sessions\n"), "{out}");
    assert!(out.contains("429s: 0 (0 on money calls)"), "{out}");
    assert!(out.ends_with(": kept\n"), "{out}");
    // One read a second for sessions arriving 3 a second: reads wait far past the policy's
    // minute.
    let o = run(&[
        "simulate",
        "--rate",
        "3",
        "--sessions",
        "2000",
        "--limit",
        "1",
        "--read-share",
        "1",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        report["max_read_wait_secs"].as_f64().unwrap() > 60.0,
        "{report}"
    );
    for bad in ["0/s", "fast", "-1"] {
        let o = run(&["simulate", "--rate", bad, "--sessions", "1"]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
    }
}

/// `simulate --late` delivers calls after the callbacks of later changes (judged from the log:
/// a callback stamped before one already received); `--trust verified` simulates an integrator
/// that checks secrets, logs only the callbacks it checked, and `check --trust verified` agrees
/// with the oracle; the same log replayed as hints differs (a verifying integrator confirmed
/// payments by their callbacks and read less: as hints those callbacks decide nothing).
#[test]
fn simulate_delivers_late_calls_and_simulates_a_verifying_integrator() {
    let dir = temp("late");
    std::fs::create_dir_all(&dir).unwrap();
    let (log, expected) = (dir.join("log.jsonl"), dir.join("expected.jsonl"));
    let o = run(&[
        "simulate",
        "--sessions",
        "300",
        "--seed",
        "5",
        "--late",
        "0.3",
        "--forged",
        "0.5",
        "--trust",
        "verified",
        "--expected",
        expected.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(&log, &o.stdout).unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("forged") && !err.contains("(0 forged)"),
        "{err}"
    );
    // Late: per session, a callback arrives after one of a later change.
    let mut latest = std::collections::HashMap::<String, String>::default();
    let mut late = 0;
    for line in json_lines(&o) {
        let Some(c) = line.get("callback") else {
            continue;
        };
        let s = &c["session"];
        let (id, changed) = (
            s["session_id"].as_str().unwrap(),
            s["updated_at"].as_str().unwrap(),
        );
        let seen = latest.entry(id.to_owned()).or_default();
        if changed < seen.as_str() {
            late += 1;
        } else {
            *seen = changed.to_owned();
        }
    }
    assert!(late > 10, "{late} late callbacks");
    // Checked callbacks only: no forged body (every logged callback names its session's own
    // completion data, and the replay under verified trust is exactly the oracle's).
    let check = |trust: &str| {
        run(&[
            "check",
            "--trust",
            trust,
            log.to_str().unwrap(),
            expected.to_str().unwrap(),
        ])
    };
    let o = check("verified");
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).starts_with("300 sessions expected: 300 matched, 0 differ"),
        "{}",
        stdout(&o)
    );
    let o = check("hint");
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
}

/// The fleet's consumers open their pages as people do (a late opener's page is read blind
/// until it is opened); `--all-open-at-once` opens every page at its creation, as before.
#[test]
fn the_fleet_draws_people_unless_all_open_at_once() {
    let mean_reads_of_hinted_paid = |extra: &[&str]| {
        let base = [
            "simulate",
            "--rate",
            "1.16/s",
            "--sessions",
            "3000",
            "--limit",
            "50",
        ];
        let o = run(&[&base[..], extra].concat());
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        let out = stdout(&o);
        let line = out
            .lines()
            .find(|l| {
                l.trim_start()
                    .starts_with("paid, a callback or redirect came")
            })
            .unwrap_or_else(|| panic!("{out}"))
            .to_owned();
        let mean: f64 = line
            .split_whitespace()
            .nth_back(2)
            .unwrap()
            .parse()
            .unwrap();
        mean
    };
    let at_once = mean_reads_of_hinted_paid(&["--all-open-at-once"]);
    let people = mean_reads_of_hinted_paid(&[]);
    assert!((at_once - 1.0).abs() < 0.005, "{at_once}");
    assert!(people > 1.1, "{people}");
    // Outside fleet mode it would do nothing: refused.
    let o = run(&["simulate", "--sessions", "3", "--all-open-at-once"]);
    assert_eq!(o.status.code(), Some(2));
}
