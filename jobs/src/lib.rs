//! The job families and register_all()
