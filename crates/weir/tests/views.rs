//! The map and list views of a side input on every runner, ported from
//! Beam's `ViewTest`: testMapSideInput, testWindowedMapSideInput,
//! testMapSideInputWithNullValuesCatchesDuplicates (a duplicate key fails
//! the job with a message naming it) and testListSideInput (with an empty
//! list besides).

use weir::prelude::*;
use weir::testing::{assert_that, on_every_runner, runners};

/// Looks each element up in a map view: (element, value or 0).
#[derive(Clone)]
struct Lookup(SideInput<(String, u32)>);

impl DoFn for Lookup {
    type In = String;
    type Out = (String, u32);
    fn process(&mut self, cx: &mut ProcessContext<'_, String, (String, u32)>) {
        let found = match cx.side_map(&self.0) {
            Ok(map) => map.get(cx.element()).copied().unwrap_or(0),
            Err(e) => return cx.fail(e),
        };
        let key = cx.element().clone();
        cx.output((key, found));
    }
}

#[test]
fn a_map_view_looks_up_each_key() {
    let out = on_every_runner(|p| {
        let side = p.create([("a".to_string(), 1u32), ("b".into(), 3)]).as_side_input();
        p.create(["apple", "banana", "blackberry", "a", "b", "c"].map(String::from))
            .par_do_with_side_inputs(Lookup(side.clone()), &side, ())
            .main
            .collect()
    });
    assert_that(&out).contains_in_any_order([
        ("apple".to_string(), 0),
        ("banana".into(), 0),
        ("blackberry".into(), 0),
        ("a".into(), 1),
        ("b".into(), 3),
        ("c".into(), 0),
    ]);
}

/// testWindowedMapSideInput: each window reads the map of its own window.
#[test]
fn a_windowed_map_view_is_per_window() {
    let out = on_every_runner(|p| {
        let fixed = || WindowingStrategy::new(FixedWindows::of(Duration::from_millis(10)).unwrap());
        let side = p
            .create_timestamped([
                (("a".to_string(), 1u32), Timestamp::from_millis(1)),
                (("a".into(), 2), Timestamp::from_millis(13)),
            ])
            .window_into(fixed())
            .as_side_input();
        p.create_timestamped([("a".to_string(), Timestamp::from_millis(4)), ("a".into(), Timestamp::from_millis(15))])
            .window_into(fixed())
            .par_do_with_side_inputs(Lookup(side.clone()), &side, ())
            .main
            .collect()
    });
    assert_that(&out).in_window(Window::interval(0, 10)).contains_in_any_order([("a".to_string(), 1)]);
    assert_that(&out).in_window(Window::interval(10, 20)).contains_in_any_order([("a".to_string(), 2)]);
}

#[test]
fn a_map_view_with_a_duplicate_key_fails_the_job_naming_it() {
    for (name, runner) in runners() {
        let p = Pipeline::new();
        let side = p.create([("a".to_string(), 1u32), ("a".into(), 2)]).as_side_input();
        p.create(["a".to_string()])
            .par_do_with_side_inputs(Lookup(side.clone()), &side, ())
            .main
            .named("Lookup")
            .collect();
        let err = p.run_with(&*runner()).unwrap_err().to_string();
        assert!(err.contains("'Lookup'") && err.contains("several values for key \"a\""), "{name}: {err}");
    }
}

/// Sums a list view and outputs it with its length.
#[derive(Clone)]
struct Total(SideInput<u32>);

impl DoFn for Total {
    type In = u8;
    type Out = (usize, u32);
    fn process(&mut self, cx: &mut ProcessContext<'_, u8, (usize, u32)>) {
        let list = cx.side_list(&self.0);
        let out = (list.len(), list.iter().sum());
        cx.output(out);
    }
}

#[test]
fn a_list_view_holds_every_value_repeats_included() {
    let out = on_every_runner(|p| {
        let side = p.create([11u32, 13, 17, 23, 11]).as_side_input();
        p.create([0u8, 1]).par_do_with_side_inputs(Total(side.clone()), &side, ()).main.collect()
    });
    assert_that(&out).contains_in_any_order([(5, 75), (5, 75)]);
    let empty = on_every_runner(|p| {
        let side = p.create(Vec::<u32>::new()).as_side_input();
        p.create([0u8]).par_do_with_side_inputs(Total(side.clone()), &side, ()).main.collect()
    });
    assert_that(&empty).contains_in_any_order([(0, 0)]);
}
