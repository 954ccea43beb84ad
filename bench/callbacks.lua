-- wrk script: POST the pre-made OSS callbacks of a file in turn.
-- Each line: path <TAB> authorization <TAB> x-oss-pub-key-url <TAB> body.
-- Arguments: the file, and the first and last line this run may use, so
-- that every run sends callbacks no earlier run has sent.
local requests = {}
local count = 0
local index = 0

function init(args)
  local first, last = tonumber(args[2]), tonumber(args[3])
  local number = 0
  for line in io.lines(args[1]) do
    number = number + 1
    if number >= first and number <= last then
      local path, auth, keyurl, body = line:match("([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)")
      count = count + 1
      requests[count] = wrk.format("POST", path, {
        ["Authorization"] = auth,
        ["x-oss-pub-key-url"] = keyurl,
        ["Content-Type"] = "application/x-www-form-urlencoded",
      }, body)
    end
  end
end

function request()
  index = index % count + 1
  return requests[index]
end
