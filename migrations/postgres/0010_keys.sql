-- Project DSN keys and project deletion (issue 10): written by the projects-and-keys work.
SELECT 1;
