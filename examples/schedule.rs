//! Availability: the parent keeps running after a spawn; the child runs
//! when the parent waits. Prints `Hello` then `World`.

fn main() {
    mkernel::run((), |()| {
        let child = mkernel::spawn(|| println!("World"));
        println!("Hello");
        child.join().unwrap();
    });
}
