use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
fn main() {
    let a = Pkcs11::new("/usr/lib/softhsm/libsofthsm2.so").unwrap();
    println!("first init: {:?}", a.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)));
    let b = Pkcs11::new("/usr/lib/softhsm/libsofthsm2.so").unwrap();
    println!("second context init: {:?}", b.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)));
    drop(b); // C_Finalize on drop of the second context...
    println!("first context after dropping second: {:?}", a.get_slots_with_token().map(|s| s.len()));
}
