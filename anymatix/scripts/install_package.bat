@echo off
rem Installs more Python packages into this portable anymatix environment: exactly
rem `packages.bat install`, so the protected packages stay and `packages.bat undo` can take it back.
rem   install_package.bat PACKAGE [PACKAGE ...]     (any `pip install` arguments work)
rem It runs what packages.bat runs, directly: `call` would reread the arguments (doubling ^).
"%~dp0python\python.exe" -s "%~dp0tools\packages.py" install %*
exit /b %ERRORLEVEL%
