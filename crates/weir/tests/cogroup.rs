//! `CoGroup` (CoGroupByKey over any number of inputs of any value types) on
//! every runner, ported from Beam's `CoGroupByKeyTest`: testCoGroupByKey
//! (three inputs), testCoGroupByKeyGetOnly (reading one input's values),
//! testCoGroupByKeyWithWindowing (per window) and an empty input.

use weir::prelude::*;
use weir::testing::{assert_that, on_every_runner};

type Row = (u32, Vec<String>, Vec<u64>, Vec<i64>);

/// Per key: each input's values, sorted (a CoGbkResult is unordered).
fn three_way(p: &Pipeline, windowed: bool) -> Collected<Row> {
    let at = |t: i64| Timestamp::from_millis(t);
    let strategy = || WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap());
    let names = p.create_timestamped([
        ((1u32, "Alice".to_string()), at(1)),
        ((2, "Bob".into()), at(2)),
        ((3, "Carl".into()), at(12)),
    ]);
    let purchases =
        p.create_timestamped([((1u32, 10u64), at(3)), ((1, 20), at(4)), ((3, 30), at(13)), ((4, 40), at(5))]);
    let visits = p.create_timestamped([((2u32, -1i64), at(5)), ((3, -2), at(3)), ((3, -3), at(14))]);
    let (names, purchases, visits) = if windowed {
        (names.window_into(strategy()), purchases.window_into(strategy()), visits.window_into(strategy()))
    } else {
        (names, purchases, visits)
    };
    let mut cg = CoGroup::new();
    let (n, pu, v) = (cg.add(&names), cg.add(&purchases), cg.add(&visits));
    cg.co_group_by_key()
        .map(move |(k, r): (u32, CoGbkResult)| {
            let (mut a, mut b, mut c) = (r.get(&n), r.get(&pu), r.get(&v));
            a.sort();
            b.sort();
            c.sort();
            (k, a, b, c)
        })
        .collect()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn three_inputs_grouped_by_key() {
    let out = on_every_runner(|p| three_way(p, false));
    assert_that(&out).contains_in_any_order([
        (1, s(&["Alice"]), vec![10, 20], vec![]),
        (2, s(&["Bob"]), vec![], vec![-1]),
        (3, s(&["Carl"]), vec![30], vec![-3, -2]),
        (4, s(&[]), vec![40], vec![]),
    ]);
}

#[test]
fn three_inputs_grouped_by_key_and_window() {
    let out = on_every_runner(|p| three_way(p, true));
    let (first, second) = (Window::interval(0, 10), Window::interval(10, 20));
    assert_that(&out).in_window(first).contains_in_any_order([
        (1, s(&["Alice"]), vec![10, 20], vec![]),
        (2, s(&["Bob"]), vec![], vec![-1]),
        (3, s(&[]), vec![], vec![-2]),
        (4, s(&[]), vec![40], vec![]),
    ]);
    assert_that(&out).in_window(second).contains_in_any_order([(3, s(&["Carl"]), vec![30], vec![-3])]);
}

/// testCoGroupByKeyGetOnly, with an input that is empty.
#[test]
fn one_inputs_values_read_alone() {
    let out = on_every_runner(|p| {
        let a = p.create([("k".to_string(), 1u8), ("k".into(), 2), ("j".into(), 3)]);
        let empty = p.create(Vec::<(String, String)>::new());
        let mut cg = CoGroup::new();
        let (ta, te) = (cg.add(&a), cg.add(&empty));
        cg.co_group_by_key()
            .map(move |(k, r): (String, CoGbkResult)| {
                let mut v = r.get(&ta);
                v.sort();
                (k, v, r.is_empty_for(&te))
            })
            .collect()
    });
    assert_that(&out).contains_in_any_order([("j".to_string(), vec![3], true), ("k".into(), vec![1, 2], true)]);
}
