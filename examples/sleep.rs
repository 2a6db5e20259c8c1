//! Sleeping suspends the task, not the unikernel: prints `Hello`, sleeps
//! one second, prints `World`.

use std::time::Duration;

fn main() {
    mkernel::run((), |()| {
        println!("Hello");
        mkernel::sleep(Duration::from_secs(1));
        println!("World");
    });
}
