"""`lmforge ui`: a local web app over the folders lmforge writes — watch runs, start and cancel
fine-tunes, try a model, compare runs. Server modules: `paths` (what may be touched), `runs`
(folders to summaries and curves), `jobs` (training processes it started), `newrun` (form to
config to pre-flight), `app` (routes). The browser side is plain JS modules in `static/`."""
