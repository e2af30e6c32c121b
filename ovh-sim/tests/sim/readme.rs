//! The README's full fixture example parses and starts (without its mail backend).

use ovh_sim::{Fixture, Simulator};

#[test]
fn the_readme_example_is_a_valid_fixture() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read the README");
    let start = readme.find("```yaml\n").expect("a YAML example") + "```yaml\n".len();
    let end = start + readme[start..].find("```").expect("end of the example");
    let mut fixture = Fixture::from_yaml(&readme[start..end]).expect("the example parses");
    assert!(fixture.mail.is_some());
    assert_eq!(fixture.exchange_services[0].placeholders, 3);
    fixture.mail = None;
    let simulator = Simulator::start(fixture);
    assert!(simulator.base_url().ends_with("/1.0"));
    assert!(
        Fixture::from_yaml("auth: {application_key: a, application_secret: b, typo: 1}").is_err()
    );
}
