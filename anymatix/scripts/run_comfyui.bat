@echo off
rem Starts ComfyUI with this folder's python and opens it in the browser when it answers; any
rem arguments go to ComfyUI (--listen, --port 8189, --disable-auto-launch, ...). A switch between
rem releases that was stopped (see update.bat) is taken back first.
(if exist "%~dp0.update\switch.journal" "%~dp0.update\runner\python.exe" -I -S "%~dp0.update\switch.py" recover "%~dp0.") & "%~dp0python\python.exe" -s "%~dp0ComfyUI\main.py" --auto-launch @VARIANT_ARGS@%* & exit /b
